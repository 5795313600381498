-- Pandoc Lua filter of common.report's fallback renderer (pandoc HTML, typst PDF).
local TITLES = {note="Note", tip="Astuce", warning="Avertissement", caution="Attention",
                important="Important"}
local COLORS = {note="#0969da", tip="#1a7f37", warning="#d4a72c", caution="#e16f24",
                important="#cf222e"}
local html = FORMAT:match("html") ~= nil
function RawBlock(el)
  if el.format == "html" and (not html or el.text:find("<table")) then
    local ok, doc = pcall(pandoc.read, el.text, "html")
    if ok then return doc.blocks end
  end
end
function Div(el)
  local kind
  for _, c in ipairs(el.classes) do kind = kind or c:match("^callout%-(%a+)$") end
  if not kind then return nil end
  local title = pandoc.Inlines(TITLES[kind] or kind)
  if el.attributes.title then
    title = pandoc.utils.blocks_to_inlines(pandoc.read(el.attributes.title, "markdown").blocks)
  elseif #el.content > 0 and el.content[1].t == "Header" then
    title = el.content[1].content
    el.content:remove(1)
  end
  el.attributes.title = nil
  if html then
    el.classes:insert("callout")
    el.content:insert(1, pandoc.Div(pandoc.Plain(title), {class="callout-title"}))
    return el
  end
  local col = 'rgb("' .. (COLORS[kind] or "#0969da") .. '")'
  local out = pandoc.Blocks{pandoc.RawBlock(FORMAT, "#block(width: 100%, inset: 8pt, radius: 3pt, "
    .. "fill: " .. col .. ".lighten(88%), stroke: (left: 3pt + " .. col .. "))[")}
  out:insert(pandoc.Para{pandoc.Strong(title)})
  out:extend(el.content)
  out:insert(pandoc.RawBlock(FORMAT, "]"))
  return out
end
function Pandoc(doc)
  -- section numbers, from the highest level used (as Quarto does): "1", "1.2"...
  local top = 6
  doc:walk{Header = function(h)
    if not h.classes:includes("unnumbered") then top = math.min(top, h.level) end
  end}
  local counts = {}
  return doc:walk{Header = function(h)
    if h.classes:includes("unnumbered") then return nil end
    local depth = h.level - top + 1
    counts[depth] = (counts[depth] or 0) + 1
    for i = depth + 1, 6 do counts[i] = nil end
    local number = {}
    for i = 1, depth do table.insert(number, tostring(counts[i] or 0)) end
    h.content:insert(1, pandoc.Space())
    h.content:insert(1, pandoc.Span(table.concat(number, "."),
                                    {class = "header-section-number"}))
    return h
  end}
end
