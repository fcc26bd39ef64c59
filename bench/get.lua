-- wrk script: GET one classic API path as one user (the app key and session as arguments,
-- after --), one request after another on each connection.
function init(args)
  wrk.headers["X-APP-Key"] = args[1]
  wrk.headers["X-APP-Session"] = args[2]
end
