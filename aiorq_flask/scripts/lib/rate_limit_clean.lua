-- The sweep's part of rq 3.0's concurrency limits (lib/rate_limit.lua, loaded before it).
-- Free slots a job holds without needing them (canceled or deleted while queued, ended
-- while no one recorded it) and fill them; forget keys with no job (rq's cleanup).
local function rl_clean(ts, now)
  for _, key in ipairs(redis.call('SMEMBERS', KEY.rl_keys)) do
    for _, id in ipairs(redis.call('ZRANGE', KEY.rl_allowed(key), 0, -1)) do
      local status = redis.call('HGET', KEY.job(id), 'status')
      local live = redis.call('ZCOUNT', KEY.executions(id), '(' .. now, '+inf') > 0
      if status ~= STATUS.QUEUED and status ~= STATUS.STARTED and not live then
        rl_release(key, id, ts, now)
      end
    end
    local concurrency = tonumber(redis.call('HGET', KEY.rate_limit(key), 'concurrency'))
    if concurrency then
      rl_fill(key, concurrency, ts, now)  -- a stock enqueue cut off before its fill
    end
    if redis.call('ZCARD', KEY.rl_allowed(key)) == 0
        and redis.call('ZCARD', KEY.rl_waiting(key)) == 0 then
      redis.call('SREM', KEY.rl_keys, key)
      redis.call('DEL', KEY.rate_limit(key))
    end
  end
end
