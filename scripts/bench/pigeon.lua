-- wrk script for Pigeon: POST /v1/messages, a unique recipient per request.
-- KEYS: API keys separated by spaces (requests take them in turn).
-- LOAD: "otp" (the single-part OTP the Kannel run sends too) or "mix"
-- (otp/transactional/marketing, VN/HK/US/GB, a fifth UCS-2, a tenth two-part).
-- SEND_AT: if set, every message is scheduled for then (the accept path alone).
local keys = {}
for k in string.gmatch(os.getenv("KEYS") or "", "%S+") do keys[#keys + 1] = k end
local load = os.getenv("LOAD") or "otp"
local send_at = os.getenv("SEND_AT")
if send_at == "" then send_at = nil end
local extra = send_at and (',"send_at":"' .. send_at .. '"') or ""

local otp = "Your verification code is 928138"
-- The mix, one entry per tenth of the traffic: type, country prefix, body.
local mix = {
  { "otp", "+8491", otp },
  { "otp", "+8491", otp },
  { "otp", "+85261", "Your code is 371904. It expires in 5 minutes." },
  { "otp", "+1415", "Your verification code is 552019" },
  { "transactional", "+447400", "Your parcel 3F9A-22 is out for delivery today between 10:00 and 14:00. Track it or change the slot at example.com/t/3F9A22 - reply HELP for help." },
  { "transactional", "+8491", "Đơn hàng #5521 của bạn đã được giao. Cảm ơn bạn!" },
  { "transactional", "+85261", "【順豐】您的包裹已到達，取件碼 7731。" },
  { "transactional", "+1415", "Appointment reminder: Tuesday 3:30 PM with Dr. Lee. Reply C to confirm." },
  { "otp", "+8491", otp },
  { "transactional", "+447400", "Your account balance is low: GBP 4.20 left." },
}
local digits = { ["+8491"] = 7, ["+85261"] = 6, ["+1415"] = 7, ["+447400"] = 6 }

-- One request in 20 is marketing, which the shipped pacing policy sends only
-- from 08:00 to 21:00 on the recipient's clock (and at 20/s per account):
-- to whichever of VN, GB and the US (New York time) is in the day now.
local marketing = "Sale this weekend: 20% off everything in store. Reply STOP to opt out."
local utc = tonumber(os.date("!%H"))
local daytime = "+8491"
for _, c in ipairs({ { "+8491", 7 }, { "+447400", 0 }, { "+1415", -5 } }) do
  local hour = (utc + c[2]) % 24
  if hour >= 9 and hour < 20 then daytime = c[1] break end
end

-- Each wrk thread counts from its own start, so recipients never repeat
-- within a run (the shipped pacing policy holds a recipient to 3 marketing
-- messages a day, and a fourth would wait hours).
local threads = 0
function setup(thread)
  thread:set("first", threads * 500000)
  threads = threads + 1
end

local n = 0
function init(args)
  n = first or 0
end

request = function()
  n = n + 1
  local kind, prefix, body
  if load == "mix" and n % 20 == 0 then
    kind, prefix, body = "marketing", daytime, marketing
  elseif load == "mix" then
    local e = mix[(n % #mix) + 1]
    kind, prefix, body = e[1], e[2], e[3]
  else
    kind, prefix, body = "otp", "+8491", otp
  end
  local width = digits[prefix]
  -- 7919 is prime to every modulus here: distinct n, distinct numbers.
  local number = (n * 7919) % (10 ^ width)
  -- A US subscriber number does not start with 0 or 1.
  if prefix == "+1415" then number = 2000000 + (n * 7919) % 8000000 end
  local to = prefix .. string.format("%0" .. width .. "d", number)
  -- Every account gets its share of the marketing (n is a multiple of 20
  -- for those; 21 has no factor in common with the key count, 64).
  local key = keys[((n + math.floor(n / 20)) % #keys) + 1]
  local json = '{"to":"' .. to .. '","type":"' .. kind .. '","body":"' .. body .. '"' .. extra .. '}'
  return wrk.format("POST", "/v1/messages", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, json)
end
