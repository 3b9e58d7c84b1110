-- wrk script: unique Kavkom CDRs (its API docs' example, another callUuid each time).
-- BENCH_PATH, BENCH_AUTH, BENCH_RUN, BENCH_METHOD come from bench/ingest.py.
local counter = 0
local thread_id = 0
local threads = {}

function setup(thread)
  thread_id = thread_id + 1
  thread:set("tid", thread_id)
  table.insert(threads, thread)
end

function init(args)
  path = os.getenv("BENCH_PATH") or "/webhooks/kavkom"
  auth = os.getenv("BENCH_AUTH") or ""
  run = os.getenv("BENCH_RUN") or "0"
  method = os.getenv("BENCH_METHOD") or "POST"
end

function request()
  if method == "GET" then return wrk.format("GET", path) end
  counter = counter + 1
  local body = string.format(
    '{"event":"cdr","callUuid":"bench-%s-%d-%d","direction":"outbound",' ..
    '"number":"33612345678","state":"finished","duration":120}', run, tid, counter)
  local headers = {["Content-Type"] = "application/json"}
  if auth ~= "" then headers["Authorization"] = "Bearer " .. auth end
  return wrk.format("POST", path, headers, body)
end
