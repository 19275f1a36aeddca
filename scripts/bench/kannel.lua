-- wrk script for Kannel: GET /cgi-bin/sendsms with the same single-part OTP
-- and the same recipients as pigeon.lua's "otp" load. LOAD=mix: one request
-- in 10 a two-part message, two in 10 UCS-2 (as pigeon.lua's mix has them).
local load = os.getenv("LOAD") or "otp"
local otp = "Your+verification+code+is+928138"
local long = string.rep("Long+message+part+", 12) .. "end" -- > 160 GSM characters
local ucs2 = "%E3%80%90%E9%A1%BA%E4%B8%B0%E3%80%91%E6%82%A8%E7%9A%84%E5%8C%85%E8%A3%B9%E5%B7%B2%E5%88%B0%E8%BE%BE"
  .. "&coding=2&charset=UTF-8"
local n = 0
request = function()
  n = n + 1
  local to = string.format("+8491%07d", (n * 7919 + math.random(0, 999)) % 10000000)
  local text = otp
  if load == "mix" and n % 10 == 0 then
    text = long
  elseif load == "mix" and n % 10 <= 2 then
    text = ucs2
  end
  return wrk.format("GET", "/cgi-bin/sendsms?username=bench&password=bench&from=12345&to="
    .. (to:gsub("%+", "%%2B")) .. "&text=" .. text)
end
