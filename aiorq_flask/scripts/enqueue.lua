-- Write one job in rq's format (spec §5.1, §5.2): the hash, `SADD rq:queues`, and the
-- push (or the scheduled entry) in one atomic step, so no worker can pop an id before its
-- hash exists. Fields that are the same for every new job are spelled here, so a call
-- carries only what varies.
-- With parents (depends_on, spec §5.3), the check of their statuses and the write are this
-- same atomic step: a job whose parents are not all done is written 'deferred' instead,
-- and booked where the worker that finishes a parent looks for it. (rq's WATCH sequence
-- holds a connection across round trips; this needs none and cannot race.)
-- KEYS: job key, queue key.
-- ARGV: status ('queued' | 'scheduled' | 'deferred' | 'started'), where ('R' RPUSH,
--       'L' LPUSH, a due epoch for 'scheduled', '' for no push), queue name, ttl or '',
--       created_at (rq ts), data ('' when written beside), description, timeout, now (integer epoch), '1' if a
--       failed parent counts as done, the number of parents n, the n parent ids, then
--       optional field/value pairs.
-- Returns the status written.
local job, queue = KEYS[1], KEYS[2]
local status, where, origin, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local id = string.sub(job, 8)  -- after 'rq:job:'
local allow_failed, parent_count = ARGV[10] == '1', tonumber(ARGV[11])
local parents = {unpack(ARGV, 12, 11 + parent_count)}
for _, parent in ipairs(parents) do
  local parent_status = redis.call('HGET', 'rq:job:' .. parent, 'status')
  local done = parent_status == false or parent_status == 'finished'  -- gone: it expired
    or (allow_failed and parent_status == 'failed')
  if not done then
    status, where = 'deferred', ''
  end
end
local fields = {'status', status, 'created_at', ARGV[5],
  'success_callback_name', '', 'failure_callback_name', '', 'stopped_callback_name', '',
  'started_at', '', 'ended_at', '', 'last_heartbeat', '', 'worker_name', '', 'group_id', '',
  'origin', origin, 'description', ARGV[7], 'timeout', ARGV[8]}
if ARGV[6] ~= '' then  -- '': a big payload, written by a plain HSET just before this call
  fields[#fields + 1] = 'data'
  fields[#fields + 1] = ARGV[6]
end
if status == 'queued' then
  fields[#fields + 1] = 'enqueued_at'
  fields[#fields + 1] = ARGV[5]
end
for i = 12 + parent_count, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', job, unpack(fields))
if ttl ~= '' then
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', job .. ':dependents', ttl)
  redis.call('EXPIRE', 'rq:job::' .. id .. ':dependencies', ttl)
end
redis.call('SADD', 'rq:queues', queue)
if where == 'R' then
  redis.call('RPUSH', queue, id)
elseif where == 'L' then
  redis.call('LPUSH', queue, id)
elseif where ~= '' then
  redis.call('ZADD', 'rq:scheduled:' .. origin, where, id)
end
if status == 'deferred' then
  redis.call('ZADD', 'rq:deferred:' .. origin, ARGV[9], id)
  for _, parent in ipairs(parents) do
    redis.call('SADD', 'rq:job:' .. parent .. ':dependents', id)
    redis.call('SADD', 'rq:job::' .. id .. ':dependencies', parent)
  end
end
return status
