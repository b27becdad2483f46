-- Write one job in rq's format (spec §5.1, §5.2): the hash, `SADD` to the queues set, and
-- the push (or the scheduled entry) in one atomic step, so no worker can pop an id before
-- its hash exists. Fields that are the same for every new job are spelled here, so a call
-- carries only what varies.
-- With parents (depends_on, spec §5.3), the check of their statuses and the write are this
-- same atomic step: a job whose parents are not all done is written deferred instead, and
-- booked where the worker that finishes a parent looks for it. (rq's WATCH sequence holds
-- a connection across round trips; this needs none and cannot race.)
-- KEYS: the queue key.
-- ARGV: job id, status (a STATUS: queued, scheduled or started), where ('R' RPUSH, 'L'
--       LPUSH, a due epoch when scheduled, '' for no push), queue name, ttl or '',
--       created_at (rq ts), data ('' when written beside, by a plain HSET just before this
--       call), description, timeout, now (integer epoch), '1' if a failed parent counts as
--       done, the number of parents n, the n parent ids, then optional field/value pairs.
-- Returns the status written.
local queue = KEYS[1]
local id, status, where, origin, ttl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local job = KEY.job(id)
local allow_failed, parent_count = ARGV[11] == '1', tonumber(ARGV[12])
local parents = {unpack(ARGV, 13, 12 + parent_count)}
for _, parent in ipairs(parents) do
  local parent_status = redis.call('HGET', KEY.job(parent), 'status')
  local done = parent_status == false or parent_status == STATUS.FINISHED  -- gone: expired
    or (allow_failed and parent_status == STATUS.FAILED)
  if not done then
    status, where = STATUS.DEFERRED, ''
  end
end

local fields = {'status', status, 'created_at', ARGV[6],
  'success_callback_name', '', 'failure_callback_name', '', 'stopped_callback_name', '',
  'started_at', '', 'ended_at', '', 'last_heartbeat', '', 'worker_name', '', 'group_id', '',
  'origin', origin, 'description', ARGV[8], 'timeout', ARGV[9]}
if ARGV[7] ~= '' then
  fields[#fields + 1] = 'data'
  fields[#fields + 1] = ARGV[7]
end
if status == STATUS.QUEUED then
  fields[#fields + 1] = 'enqueued_at'
  fields[#fields + 1] = ARGV[6]
end
for i = 13 + parent_count, #ARGV do
  fields[#fields + 1] = ARGV[i]
end
redis.call('HSET', job, unpack(fields))

if ttl ~= '' then
  for _, key in ipairs({job, KEY.dependents(id), KEY.dependencies(id)}) do
    redis.call('EXPIRE', key, ttl)
  end
end
redis.call('SADD', KEY.queues, queue)
if where == 'R' then
  redis.call('RPUSH', queue, id)
elseif where == 'L' then
  redis.call('LPUSH', queue, id)
elseif where ~= '' then
  redis.call('ZADD', KEY.scheduled(origin), where, id)
end
if status == STATUS.DEFERRED then
  redis.call('ZADD', KEY.deferred(origin), ARGV[10], id)
  for _, parent in ipairs(parents) do
    redis.call('SADD', KEY.dependents(parent), id)
    redis.call('SADD', KEY.dependencies(id), parent)
  end
end
return status
