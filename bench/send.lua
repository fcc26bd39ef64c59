-- wrk script: POST /message in the classic API, round-robin over many senders so that no
-- single user's load comes near the per-user rate limits.
-- Arguments (after --): a file with one "session conversationid" pair per line, the app key.
local senders = {}
local next_sender = 0
local app_key = ""

function init(args)
  for line in io.lines(args[1]) do
    local session, cid = line:match("^(%S+) (%S+)$")
    if session then table.insert(senders, {session, cid}) end
  end
  app_key = args[2]
  -- threads start at different senders
  next_sender = math.random(#senders) - 1
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
