-- Empty one queue: its ids and their jobs, in one atomic step, so a job pushed meanwhile
-- is either deleted with the rest or left whole (never an id without its hash, nor a
-- hash without its id).
-- KEYS: the queue key. Returns how many ids it removed.
local ids = redis.call('LRANGE', KEYS[1], 0, -1)
redis.call('DEL', KEYS[1])
for _, id in ipairs(ids) do
  redis.call('DEL', KEY.job(id), KEY.results(id), KEY.dependents(id), KEY.dependencies(id))
end
return #ids
