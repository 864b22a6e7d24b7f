-- Raises sequences to floors, never lowering one: after Redis lost data (or came back from an
-- older snapshot), the ids it hands out next must lie above every id MySQL already holds.
--
-- KEYS[i] a sequence (STRING), all in one slot; ARGV[i] its floor
--
-- Returns how many sequences were raised.
local raised = 0
for i, key in ipairs(KEYS) do
  if (tonumber(redis.call('GET', key)) or 0) < tonumber(ARGV[i]) then
    redis.call('SET', key, ARGV[i])
    raised = raised + 1
  end
end
return raised
