-- rq 3.0's concurrency limits (rq/rate_limit.py), in its keys and with its rules, so stock
-- rq workers and ours share one limit. A job with a `rate_limit_key` holds one of the key's
-- `concurrency` slots (rq:rl:<key>:allowed) while queued or started; the others wait in
-- rq:rl:<key>:rate_limited, status rate_limited, oldest first. Every step that ends a job's
-- hold calls rl_release in the same script call, so the next job goes through at once.

-- Fill the free slots of `key` with waiting jobs, oldest first: each is let through and
-- pushed onto its queue (at the front if it asked), marked queued. Waiting entries whose
-- hash is gone or no longer rate_limited are dropped (rq's ACQUIRE_AND_ENQUEUE_SCRIPT).
local function rl_fill(key, concurrency, ts, now)
  local allowed, waiting = KEY.rl_allowed(key), KEY.rl_waiting(key)
  while redis.call('ZCARD', allowed) < concurrency do
    local popped = redis.call('ZPOPMIN', waiting)
    if #popped == 0 then
      break
    end
    local id = popped[1]
    local job = KEY.job(id)
    local f = redis.call('HMGET', job, 'origin', 'status', 'enqueue_at_front')
    if f[1] and f[2] == STATUS.RATE_LIMITED then
      redis.call('ZADD', allowed, now, id)
      redis.call(f[3] == '1' and 'LPUSH' or 'RPUSH', KEY.queue(f[1]), id)
      redis.call('HSET', job, 'status', STATUS.QUEUED, 'enqueued_at', ts)
    end
  end
end

-- Put job `id` (its hash written) in line for a slot, as rq's _enqueue_rate_limited_job:
-- register the key and its concurrency, wait as rate_limited, fill free slots. Returns
-- false, doing nothing, for a job without a limit: its caller pushes it as usual.
local function rl_hold(id, ts, now)
  local job = KEY.job(id)
  local f = redis.call('HMGET', job, 'rate_limit_key', 'rate_limit_concurrency')
  local key, concurrency = f[1], tonumber(f[2])
  if not key or key == '' or not concurrency then
    return false
  end
  redis.call('SADD', KEY.rl_keys, key)
  redis.call('HSET', KEY.rate_limit(key), 'concurrency', concurrency)
  redis.call('HSET', job, 'status', STATUS.RATE_LIMITED)
  redis.call('ZADD', KEY.rl_waiting(key), now, id)  -- rq: whole seconds; FIFO in one
  rl_fill(key, concurrency, ts, now)
  return true
end

-- The limit key of job `id` (false when it has none): read before an outcome that may
-- delete the job.
local function rl_key_of(id)
  local key = redis.call('HGET', KEY.job(id), 'rate_limit_key')
  return key ~= '' and key
end

-- After an outcome: free the slot of job `id` unless it is queued or started again (an
-- immediate retry or repeat keeps it), and let the next ones through (rq's release_slot).
local function rl_release(key, id, ts, now)
  if not key then
    return
  end
  local status = redis.call('HGET', KEY.job(id), 'status')
  if status == STATUS.QUEUED or status == STATUS.STARTED then
    return
  end
  redis.call('ZREM', KEY.rl_allowed(key), id)
  local concurrency = tonumber(redis.call('HGET', KEY.rate_limit(key), 'concurrency'))
  if concurrency then
    rl_fill(key, concurrency, ts, now)
  end
end
