-- wrk script for bench/wrk.py: POST /v1/chat, the users in turn, a JSON summary at the end.
--   wrk -t2 -c100 -d15s -s bench/wrk_chat.lua http://127.0.0.1:PORT/v1/chat -- USERS
-- Each wrk thread numbers its requests; request n of thread t speaks for user
-- (n * threads + t) % USERS, so every user is asked in turn and no two threads share a count.

local threads = {}
local counter = 0
local thread_id = 0
local thread_count = 1
local users = 1000
local path = "/v1/chat"
local headers = { ["Content-Type"] = "application/json" }

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  users = tonumber(args[1] or "1000")
  thread_count = tonumber(args[2] or "1")
  thread_id = tonumber(wrk.thread:get("thread_id") or 0)
  path = wrk.path
end

function request()
  counter = counter + 1
  local user = (counter * thread_count + thread_id) % users
  local body = '{"message":"hello, this is request ' .. counter .. '","user_id":"user-'
    .. user .. '"}'
  return wrk.format("POST", path, headers, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"max":%d}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
