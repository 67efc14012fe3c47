-- wrk-report.lua: wrk's done() hook for bench.sh. After wrk's own summary it prints one line
-- with the run's exact counts and percentiles, so that nothing is read back from wrk's text:
--
--   wrk -s bench/wrk-report.lua -t4 -c100 -d10s --latency http://127.0.0.1:8000/
--   ...
--   bench-result  REQ/S  P50_MS  P99_MS  ERRORS  CONNECT  READ  WRITE  TIMEOUT  NON_2XX  MB/S  CPU_TICKS
--
-- Fields are tab-separated. ERRORS is the sum of the four socket errors after it. NON_2XX is wrk's
-- count of responses with a status above 399 (its text calls them "Non-2xx or 3xx"). MB are
-- 2^20 bytes, as wrk prints them. CPU_TICKS is the CPU time
-- wrk itself used, all its threads, in the kernel's clock ticks, as /proc/stat counts them: bench.sh
-- subtracts it to tell how much of the machine other programs took during the run.
-- Defining only done() keeps wrk on its fast path: requests stay static, responses unread by Lua.

-- utime + stime of this process (fields 14 and 15 of /proc/self/stat), or "NA" off Linux.
local function cpu_ticks()
  local file = io.open("/proc/self/stat")
  if not file then return "NA" end
  local stat = file:read("*a")
  file:close()
  -- The command name, field 2, is in parentheses and may hold spaces: count from after it.
  local fields = {}
  for field in stat:match("%) (.*)"):gmatch("%S+") do fields[#fields + 1] = field end
  return tostring(tonumber(fields[12]) + tonumber(fields[13]))
end

done = function(summary, latency, requests)
  local seconds = summary.duration / 1e6 -- wrk counts in microseconds
  local errors = summary.errors
  io.write(string.format("bench-result\t%.4f\t%.4f\t%.4f\t%d\t%d\t%d\t%d\t%d\t%d\t%.4f\t%s\n",
    summary.requests / seconds, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    errors.connect + errors.read + errors.write + errors.timeout,
    errors.connect, errors.read, errors.write, errors.timeout, errors.status,
    summary.bytes / seconds / 1048576, cpu_ticks()))
end
