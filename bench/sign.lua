-- wrk script: POST distinct signatures, count 202s, print a JSON summary with p50/p99/p99.9.
-- Arguments (after --): petition ids (comma separated), run tag.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  petitions = {}
  for id in string.gmatch(args[1] or "1", "[^,]+") do table.insert(petitions, id) end
  tag = args[2] or "x"
  accepted = 0
  refused = 0
  domains = {"gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "gmx.de"}
end

function request()
  counter = counter + 1
  local petition = petitions[(counter % #petitions) + 1]
  local body = string.format(
    '{"email":"w%s.%d.%s@%s","name":"Load Signer %d"}',
    tid, counter, tag, domains[(counter % #domains) + 1], counter)
  return wrk.format("POST", "/petitions/" .. petition .. "/signatures",
    {["Content-Type"] = "application/json"}, body)
end

function response(status, headers, body)
  if status == 202 then accepted = accepted + 1 else refused = refused + 1 end
end

function done(summary, latency, requests)
  local a, r = 0, 0
  for _, t in ipairs(threads) do
    a = a + t:get("accepted")
    r = r + t:get("refused")
  end
  io.write(string.format(
    'WRKJSON {"accepted":%d,"refused":%d,"requests":%d,"duration_us":%d,"socket_errors":%d,' ..
    '"p50_ms":%.3f,"p99_ms":%.3f,"p999_ms":%.3f,"max_ms":%.3f}\n',
    a, r, summary.requests, summary.duration,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency:percentile(99.9) / 1000,
    latency.max / 1000))
end
