-- wrk script for Kannel: GET /cgi-bin/sendsms with the same single-part OTP
-- and the same recipients as pigeon.lua's "otp" load.
local n = 0
request = function()
  n = n + 1
  local to = string.format("+8491%07d", (n * 7919 + math.random(0, 999)) % 10000000)
  return wrk.format("GET", "/cgi-bin/sendsms?username=bench&password=bench&from=12345&to="
    .. (to:gsub("%+", "%%2B")) .. "&text=Your+verification+code+is+928138")
end
