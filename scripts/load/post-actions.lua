-- wrk script: POST one ADD_TODO per request, spread over the documents listed in $FOLIO_DOCS (comma-separated).
local docs = {}
for id in string.gmatch(os.getenv("FOLIO_DOCS"), "[^,]+") do docs[#docs + 1] = id end
local token = os.getenv("FOLIO_TOKEN")
local counter = 0

request = function()
  counter = counter + 1
  local doc = docs[(counter % #docs) + 1]
  local body = string.format('{"actions":[{"type":"ADD_TODO","input":{"id":"i%d-%d","title":"load test item"}}]}',
    counter, math.random(1, 1000000000))
  return wrk.format("POST", "/v1/documents/" .. doc .. "/actions",
    { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }, body)
end

response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("unexpected status " .. status .. ": " .. body .. "\n")
  end
end
