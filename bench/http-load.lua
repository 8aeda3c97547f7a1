-- wrk script for bench/http-load.sh and bench/run.sh. SCENARIO=list: GET a page of 50 users
-- (QUERY, e.g. "q=smith", is added to the path). SCENARIO=reset: POST a single MFA reset, each request
-- for the next user id of IDS_FILE (each thread takes its own stripe of ids, so no user is reset
-- twice). SCENARIO=login: POST a password login for the next user name of IDS_FILE, with PASSWORD.
-- SCENARIO=search: GET a page of 50 users filtered by the next line of IDS_FILE (URL-encoded text,
-- e.g. from bench/name-fragments.py: a different filter on every request until the file runs out;
-- each thread takes its own stripe; past the end a thread starts again: the caller compares the requests with the lines).
local scenario = os.getenv("SCENARIO") or "list"
local token = os.getenv("TOKEN") or ""
local ids_file = os.getenv("IDS_FILE")
local query = os.getenv("QUERY") or ""
local password = os.getenv("PASSWORD") or ""
local threads = {}
local counter = 0

function setup(thread)
   counter = counter + 1
   thread:set("tid", counter)
   table.insert(threads, thread)
end

function init(args)
   headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
   ids = {}
   if scenario == "reset" or scenario == "login" or scenario == "search" then
      local stride = tonumber(os.getenv("THREADS") or "1")
      local n = 0
      for line in io.lines(ids_file) do
         if n % stride == (tid - 1) then
            table.insert(ids, line)
         end
         n = n + 1
      end
   end
   next_id = 1
end

function request()
   if scenario == "reset" then
      local id = ids[next_id] or ids[#ids]  -- past the end: a repeat, answered 409
      next_id = next_id + 1
      return wrk.format("POST", "/api/v1/users/" .. id .. "/mfa/reset", headers, '{"reason":"load test"}')
   end
   if scenario == "login" then
      local name = ids[next_id] or ids[1]
      next_id = next_id % #ids + 1
      return wrk.format("POST", "/api/v1/auth/login", { ["Content-Type"] = "application/json" },
         '{"username":"' .. name .. '","password":"' .. password .. '"}')
   end
   if scenario == "search" then
      if next_id > #ids then
         next_id = 1
      end
      local q = ids[next_id]
      next_id = next_id + 1
      return wrk.format("GET", "/api/v1/users?limit=50&q=" .. q, headers)
   end
   local path = "/api/v1/users?limit=50"
   if query ~= "" then
      path = path .. "&" .. query
   end
   return wrk.format("GET", path, headers)
end

function done(summary, latency, requests)
   local secs = summary.duration / 1e6
   local non2xx = summary.errors.status
   local errors = summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
   io.write(string.format("RESULT %.1f %.2f %.2f %d %d %d\n",
      summary.requests / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
      summary.requests, non2xx, errors))
end
