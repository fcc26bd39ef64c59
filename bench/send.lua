-- wrk script: POST /message in the classic API, round-robin over many senders so that no
-- single user's load comes near the per-user rate limits.
-- Arguments (after --): a file with one "session conversationid" pair per line, the app key,
-- and optionally a rate (requests per second for this wrk thread): paced, open-loop load.
local senders = {}
local next_sender = 0
local app_key = ""

-- Paced load: every request takes the next slot of one schedule at `rate` per second, shared
-- by all connections, and waits for it in delay(). A fixed pause per connection instead
-- (connections * 1000 / rate ms) would send less as answers get slower, which is closed
-- loop; here the offered rate holds as long as a connection is free when a slot comes, and
-- slots missed while every connection was busy are caught up at once.
local function paced(rate)
  local ffi = require("ffi")
  ffi.cdef[[
    typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
    int clock_gettime(int clock_id, bench_timespec *tp);
  ]]
  local now = ffi.new("bench_timespec")
  local function now_ms()
    ffi.C.clock_gettime(1, now)  -- CLOCK_MONOTONIC
    return tonumber(now.tv_sec) * 1000 + tonumber(now.tv_nsec) / 1e6
  end
  local interval, slot = 1000 / rate, nil
  -- wrk looks for a global delay() after init() has run
  function delay()
    local at = now_ms()
    slot = slot and slot + interval or at
    return math.max(0, math.floor(slot - at))
  end
end

function init(args)
  for line in io.lines(args[1]) do
    local session, cid = line:match("^(%S+) (%S+)$")
    if session then table.insert(senders, {session, cid}) end
  end
  app_key = args[2]
  -- threads start at different senders
  next_sender = math.random(#senders) - 1
  if args[3] then paced(tonumber(args[3])) end
end

function request()
  next_sender = next_sender % #senders + 1
  local sender = senders[next_sender]
  local body = '{"conversationid":' .. sender[2] ..
      ',"type":-1,"content":"load","time":"1700000000000"}'
  return wrk.format("POST", "/message", {
    ["Content-Type"] = "application/json",
    ["X-APP-Key"] = app_key,
    ["X-APP-Session"] = sender[1],
  }, body)
end
