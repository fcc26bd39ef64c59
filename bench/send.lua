-- wrk script: POST /message in the classic API, round-robin over many senders so that no
-- single user's load comes near the per-user rate limits.
-- Arguments (after --): a file with one "session conversationid" pair per line, the app key,
-- and optionally a rate (requests per second for this wrk thread) and a file for the
-- latencies: paced, open-loop load.
--
-- Paced load: every request takes the next slot of one schedule at `rate` per second, shared
-- by all connections, and waits for it in delay(). A fixed pause per connection instead
-- (connections * 1000 / rate ms) would send less as answers get slower, which is closed
-- loop; here the offered rate holds as long as a connection is free when a slot comes, and
-- slots missed while every connection was busy are caught up at once.
--
-- wrk times a request from when it wrote it, so in a paced run the time a request waited for
-- a free connection (its slot long past) would be left out: coordinated omission. This script
-- times each paced request from its slot instead. The request carries its number in
-- X-Request-ID, which the service echoes on every answer (errors too), and response() looks
-- the slot up by it. At the end done() writes, one per line, "a <ms>" for every answered
-- request (answer minus slot) and "u <ms>" for every slot the schedule had reached with no
-- answer yet (sent and unanswered, or never sent: the time it had waited so far, a lower
-- bound). The message's content is "load <slot>" (CLOCK_MONOTONIC, ms), so a reader of the
-- event streams can time the whole way from the schedule to the recipient.
local ffi = require("ffi")
ffi.cdef[[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now_ms()
  ffi.C.clock_gettime(1, clock)  -- CLOCK_MONOTONIC: Python's time.monotonic() reads the same
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local senders = {}
local next_sender = 0
local app_key = ""

-- Paced runs only; globals are what done() reads from the thread with thread:get().
interval, next_slot = nil, nil
latency_file = nil
answered = {}   -- ms from slot to answer, one per answered request
waiting = {}    -- request number -> slot, for requests written and not answered yet
claimed, claimed_first, claimed_last = {}, 1, 0  -- slots delay() gave out, not yet sent
local sequence = 0

local function claim(at)
  local slot = next_slot or at
  next_slot = slot + interval
  return slot
end

local function paced(rate, file)
  interval, latency_file = 1000 / rate, file
  -- wrk looks for global delay() and response() after init() has run
  function delay()
    local at = now_ms()
    local slot = claim(at)
    claimed_last = claimed_last + 1
    claimed[claimed_last] = slot
    return math.max(0, math.floor(slot - at))
  end
  function response(status, headers, body)
    local id = headers["X-Request-ID"] or headers["x-request-id"] or ""
    local number = tonumber(id:match("^sched%-(%d+)$"))
    local slot = number and waiting[number]
    if slot then
      waiting[number] = nil
      answered[#answered + 1] = now_ms() - slot
    end
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
  if args[3] then paced(tonumber(args[3]), args[4]) end
end

function request()
  next_sender = next_sender % #senders + 1
  local sender = senders[next_sender]
  local headers = {
    ["Content-Type"] = "application/json",
    ["X-APP-Key"] = app_key,
    ["X-APP-Session"] = sender[1],
  }
  local content = "load"
  if interval then
    -- The oldest slot handed out (timers fire in slot order, to the millisecond); a request
    -- wrk writes without a delay() first (a reconnected socket) takes a slot of its own. wrk
    -- also calls request() once before the run, to check the script: that one, before any
    -- slot, is never sent and is not scheduled.
    local slot
    if claimed_first <= claimed_last then
      slot = claimed[claimed_first]
      claimed[claimed_first] = nil
      claimed_first = claimed_first + 1
    elseif next_slot then
      slot = claim(now_ms())
    end
    if slot then
      sequence = sequence + 1
      waiting[sequence] = slot
      headers["X-Request-ID"] = "sched-" .. sequence
      content = string.format("load %.3f", slot)
    end
  end
  local body = '{"conversationid":' .. sender[2] ..
      ',"type":-1,"content":"' .. content .. '","time":"1700000000000"}'
  return wrk.format("POST", "/message", headers, body)
end

-- The main state keeps the threads, to read their latencies when the run is over.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local at = now_ms()
  for _, thread in ipairs(threads) do
    local path = thread:get("latency_file")
    if path then
      local out = assert(io.open(path, "w"))
      for _, ms in ipairs(thread:get("answered")) do
        out:write(string.format("a %.3f\n", ms))
      end
      for _, name in ipairs({"waiting", "claimed"}) do
        for _, slot in pairs(thread:get(name)) do
          if slot <= at then out:write(string.format("u %.3f\n", at - slot)) end
        end
      end
      -- Slots the schedule reached that no connection was free to claim.
      local slot, step = thread:get("next_slot"), thread:get("interval")
      while slot and slot <= at do
        out:write(string.format("u %.3f\n", at - slot))
        slot = slot + step
      end
      out:close()
    end
  end
end
