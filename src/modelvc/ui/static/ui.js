// modelvc UI: progressive enhancement only (every page works without it).
// - form[data-confirm]: ask before an action; {name} in the text is replaced by the
//   form's field of that name (a select's chosen option as shown, an input's value).
// - [data-poll]: replace the element's content with the HTML fragment at its URL every
//   data-every seconds (Deployments, a model's Channels: live without a reload), except
//   while a form inside it is being filled in.
"use strict";
document.addEventListener("submit", (ev) => {
  const f = ev.target;
  if (f instanceof HTMLFormElement && f.dataset.confirm &&
      !window.confirm(fill(f, f.dataset.confirm))) {
    ev.preventDefault();
  }
});
function fill(form, text) {
  return text.replace(/\{(\w+)\}/g, (whole, name) => {
    const el = form.elements.namedItem(name);
    if (el instanceof HTMLSelectElement) {
      return el.selectedOptions.length ? el.selectedOptions[0].text : "";
    }
    return el && "value" in el ? String(el.value).trim() : whole;
  });
}
function poll(el) {
  const every = Math.max(1, Number(el.dataset.every || "3")) * 1000;
  const busy = () => el.contains(document.activeElement) ||
    Array.from(el.querySelectorAll("input:not([type=hidden])")).some((i) => i.value !== "");
  const tick = async () => {
    if (busy()) {  // someone is filling a form in it: refresh after they are done
      window.setTimeout(tick, every);
      return;
    }
    try {
      const resp = await fetch(el.dataset.poll, { credentials: "same-origin",
        headers: { "Accept": "text/html" } });
      if (resp.redirected) {  // the session ended: show the login page
        window.location.assign(resp.url);
        return;
      }
      if (resp.ok) {
        el.innerHTML = await resp.text();
        el.dataset.updated = new Date().toISOString();
      }
    } catch (e) { /* offline for a moment: try again at the next tick */ }
    window.setTimeout(tick, every);
  };
  window.setTimeout(tick, every);
}
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-poll]").forEach(poll);
});
