-- wrk script: optional pacing, a list of paths, status counts, and one line of results as JSON.
--   WRK_DELAY_MS > 0   each connection waits that long between requests (a paced prober)
--   WRK_PATHS=<file>   request these paths (one a line) in turn instead of the URL's path
--   WRK_STATUS=1       count responses per status and 503s without Retry-After (slower client)
local delay_ms = tonumber(os.getenv("WRK_DELAY_MS") or "0") or 0
local paths_file = os.getenv("WRK_PATHS") or ""
local count_status = os.getenv("WRK_STATUS") == "1"

local paths = nil
if paths_file ~= "" then
  paths = {}
  for line in io.lines(paths_file) do
    if line ~= "" then paths[#paths + 1] = line end
  end
end

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  threads[#threads + 1] = thread
end

function init(args)
  sent = 0
  statuses = {}
  no_retry_after = 0
end

if paths then
  function request()
    -- Threads start at different places in the list, so they do not ask for the same path.
    local i = (sent + id * 7919) % #paths + 1
    sent = sent + 1
    return wrk.format(nil, paths[i])
  end
end

if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

if count_status then
  function response(status, headers, body)
    statuses[status] = (statuses[status] or 0) + 1
    if status == 503 and headers["retry-after"] == nil and headers["Retry-After"] == nil then
      no_retry_after = no_retry_after + 1
    end
  end
end

function done(summary, latency, requests)
  local total = {}
  local missing = 0
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses") or {}) do
      total[status] = (total[status] or 0) + n
    end
    missing = missing + (thread:get("no_retry_after") or 0)
  end
  local parts = {}
  for status, n in pairs(total) do
    parts[#parts + 1] = string.format('"%d":%d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"p50_us":%.0f,"p90_us":%.0f,"p99_us":%.0f,' ..
    '"max_us":%.0f,"mean_us":%.1f,"statuses":{%s},"no_retry_after":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, table.concat(parts, ","), missing))
end
