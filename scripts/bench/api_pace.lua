-- wrk script: each connection waits PACE_MS between requests, so CONNECTIONS connections send
-- about CONNECTIONS * 1000 / (PACE_MS + latency) requests per second (a fixed-rate load that
-- does not speed up when answers are fast). Used by api_bench.sh.
local pace = tonumber(os.getenv("PACE_MS") or "20")

function delay()
  return pace
end
