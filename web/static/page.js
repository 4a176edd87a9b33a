// What the guide console's and the HQ dashboard's scripts share; loaded before either.
"use strict";

// A new element with `attrs` (null and undefined ones left out; "class" as its class name) and
// `children` appended, as text where they are strings: never parsed as HTML.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}
