-- wrk script for the HTTP benchmark: every write carries DEPTH pipelined
-- GET requests for the URL's path (default 16), wrk counts each response.
--   wrk -t1 -c256 -d5s --latency -s pipeline.lua http://127.0.0.1:8080/plaintext -- 16
init = function(args)
  local depth = tonumber(args[1]) or 16
  batch = string.rep(wrk.format("GET", wrk.path), depth)
end

request = function()
  return batch
end
