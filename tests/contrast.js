// What a reader cannot read on the current page, as WCAG 2 measures it: text below 4.5:1
// against what is behind it (3:1 when large), and controls whose focus ring or edge
// does not stand out 3:1 from what surrounds them. tests/test_browser.py passes this file
// to Selenium's execute_script, which runs it as a function's body: hence the closing
// `return` of the offenders, a list of plain objects.
"use strict";

function parse(css) {
  // Chromium computes every colour as rgb(r, g, b) or rgba(r, g, b, a).
  const match = /rgba?\(([^)]*)\)/.exec(css);
  if (!match) return null;
  const parts = match[1].split(/[\s,/]+/).filter(Boolean).map(Number);
  return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
}

function over(top, bottom) {
  const a = top[3];
  return [0, 1, 2].map((i) => top[i] * a + bottom[i] * (1 - a)).concat([1]);
}

function canvas() {
  // Behind every background: the page canvas, dark only when the page opted into dark.
  const dark =
    matchMedia("(prefers-color-scheme: dark)").matches &&
    getComputedStyle(document.documentElement).colorScheme.includes("dark");
  return dark ? [18, 18, 18, 1] : [255, 255, 255, 1];
}

function backgroundOf(element) {
  // The first opaque background up the tree, with the semi-transparent ones above it laid on.
  const layers = [];
  for (let e = element; e; e = e.parentElement) {
    const colour = parse(getComputedStyle(e).backgroundColor);
    if (colour && colour[3] > 0) {
      layers.push(colour);
      if (colour[3] >= 1) break;
    }
  }
  let base = layers.length && layers[layers.length - 1][3] >= 1 ? layers.pop() : canvas();
  while (layers.length) base = over(layers.pop(), base);
  return base;
}

function luminance(colour) {
  const channel = (value) => {
    const v = value / 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * channel(colour[0]) + 0.7152 * channel(colour[1]) + 0.0722 * channel(colour[2]);
}

function ratio(foreground, background) {
  const [light, dark] = [luminance(foreground), luminance(background)].sort((a, b) => b - a);
  return Math.round(((light + 0.05) / (dark + 0.05)) * 100) / 100;
}

function hex(colour) {
  const h = colour.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
  return colour[3] < 1 ? `#${h} at ${colour[3]}` : `#${h}`;
}

function selectorOf(element) {
  const parts = [];
  for (let e = element; e && e !== document.body && parts.length < 3; e = e.parentElement) {
    let part = e.localName + (e.id ? `#${e.id}` : "");
    for (const name of e.classList) part += `.${name}`;
    parts.unshift(part);
  }
  return parts.join(" > ");
}

function visible(element) {
  return (
    element.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true }) &&
    element.getClientRects().length > 0 &&
    !element.closest("select, datalist, head, script, style, template")
  );
}

function isLarge(style) {
  const size = parseFloat(style.fontSize);
  return size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
}

function ownText(element) {
  const text = Array.from(element.childNodes)
    .filter((node) => node.nodeType === Node.TEXT_NODE)
    .map((node) => node.textContent)
    .join("")
    .trim();
  if (text) return text;
  // A form control shows its value (or the chosen option) in its own colour.
  if (element.matches("select")) return element.selectedOptions[0]?.textContent.trim() ?? "";
  if (element.matches("input:not([type=hidden], [type=checkbox], [type=radio])")) {
    return element.value.trim();
  }
  return "";
}

function textOffenders() {
  const found = [];
  for (const element of document.body.querySelectorAll("*")) {
    const text = ownText(element);
    if (!text || !visible(element)) continue;
    const style = getComputedStyle(element);
    const background = backgroundOf(element);
    const colour = over(parse(style.color), background);
    const needed = isLarge(style) ? 3 : 4.5;
    const measured = ratio(colour, background);
    if (measured < needed) {
      found.push({
        what: "text",
        selector: selectorOf(element),
        text: text.replace(/\s+/g, " ").slice(0, 60),
        colour: hex(parse(style.color)),
        background: hex(background),
        ratio: measured,
        needed,
      });
    }
  }
  return found;
}

const CONTROLS = "a[href], button, input:not([type=hidden]), select, textarea";
const BOXES = "[type=hidden], [type=checkbox], [type=radio], [type=submit], [type=button]";

function controlOffenders() {
  // Non-text contrast (WCAG 1.4.11): a focused control's ring, and a form field's edge,
  // 3:1 against what is around them. A ring the colour of the button's own fill only
  // makes the button look bigger, so it must differ 3:1 from the fill too.
  const found = [];
  const previous = document.activeElement;
  for (const element of document.querySelectorAll(CONTROLS)) {
    if (!visible(element)) continue;
    const around = backgroundOf(element.parentElement);
    const fill = parse(getComputedStyle(element).backgroundColor);
    const ownFill = fill && fill[3] > 0 ? over(fill, around) : null;
    const report = (what, colour, against, measured) =>
      found.push({
        what,
        selector: selectorOf(element),
        text: (element.textContent || element.value || element.name || "").trim().slice(0, 60),
        colour: hex(colour),
        background: hex(against),
        ratio: measured,
        needed: 3,
      });
    // A field's edge is all that shows where to type; a button's label names it (WCAG's
    // understanding of 1.4.11), so only fields whose fill does not stand out need an edge.
    const style = getComputedStyle(element);
    const field = element.matches(`input:not(${BOXES}), select, textarea`);
    if (field && (ownFill === null || ratio(ownFill, around) < 3)) {
      const edge = over(parse(style.borderTopColor), around);
      const measured = parseFloat(style.borderTopWidth) > 0 ? ratio(edge, around) : 1;
      if (measured < 3) report("control edge", edge, around, measured);
    }
    element.focus({ preventScroll: true });
    const focused = getComputedStyle(element);
    // "auto" is the browser's own ring (the emails leave focus to the mail app): Chromium
    // draws it in two tones, one of which stands out on any background.
    if (focused.outlineStyle !== "auto") {
      const ring = parse(focused.outlineColor);
      const width = focused.outlineStyle === "none" ? 0 : parseFloat(focused.outlineWidth);
      const onAround = width > 0 ? ratio(over(ring, around), around) : 1;
      if (onAround < 3) report("focus ring", ring, around, onAround);
      else if (ownFill && ratio(over(ring, around), ownFill) < 3) {
        report("focus ring on its own fill", ring, ownFill, ratio(over(ring, around), ownFill));
      }
    }
    element.blur();
  }
  if (previous && previous !== document.body) previous.focus({ preventScroll: true });
  return found;
}

return textOffenders().concat(controlOffenders());
