-- Release the scheduler locks this scheduler still holds (spec §5.2).
-- ARGV: scheduler name, then the queue names.
for i = 2, #ARGV do
  local lock = KEY.scheduler_lock(ARGV[i])
  if redis.call('GET', lock) == ARGV[1] then
    redis.call('DEL', lock)
  end
end
return 1
