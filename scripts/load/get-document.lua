-- wrk script: GET one document (warm reads).
local token = os.getenv("FOLIO_TOKEN")
local doc = os.getenv("FOLIO_DOC")
request = function()
  return wrk.format("GET", "/v1/documents/" .. doc, { ["Authorization"] = "Bearer " .. token })
end
