-- A rate-limited job just written by enqueue.lua (status rate_limited, not pushed), in the
-- same MULTI: wait for a slot of its limit, or take a free one now (lib/rate_limit.lua).
-- A job enqueue.lua wrote deferred (a parent not done) is left as it is: the parent's
-- outcome puts it in line later.
-- ARGV: job id, now (float), now (rq ts).
-- Returns the job's status.
local id, now, ts = ARGV[1], tonumber(ARGV[2]), ARGV[3]
if redis.call('HGET', KEY.job(id), 'status') == STATUS.RATE_LIMITED then
  rl_hold(id, ts, now)
end
return redis.call('HGET', KEY.job(id), 'status')
