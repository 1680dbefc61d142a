// The SASE approval console's script: forms send JSON to the console API (with the session's
// CSRF token), a page can follow a resource and refresh itself when it changes, and the logout
// button ends the session. Hand-written, no dependencies; pages carry no inline script.
"use strict";

(function () {
  const csrf = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  async function call(method, url, body) {
    const headers = { "X-CSRF-Token": csrf() };
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(url, init);
    let answer = null;
    const text = await response.text();
    if (text) {
      try { answer = JSON.parse(text); } catch (_) { answer = { message: text }; }
    }
    return { ok: response.ok, status: response.status, answer };
  }

  // A field's value by its data-type: number, bool (a checkbox), lines (one item a line),
  // json, or text (empty text is left out).
  function valueOf(field) {
    const type = field.dataset.type || "text";
    if (type === "bool") return field.checked;
    const raw = field.value;
    if (type === "number") return raw === "" ? undefined : Number(raw);
    if (type === "lines") return raw.split("\n").map((s) => s.trim()).filter((s) => s !== "");
    if (type === "json") return raw.trim() === "" ? undefined : JSON.parse(raw);
    return raw === "" ? undefined : raw;
  }

  // `a.b.c` names build nested objects.
  function put(target, path, value) {
    const keys = path.split(".");
    let at = target;
    keys.slice(0, -1).forEach((k) => {
      if (typeof at[k] !== "object" || at[k] === null) at[k] = {};
      at = at[k];
    });
    at[keys[keys.length - 1]] = value;
  }

  function bodyOf(form) {
    const body = {};
    form.querySelectorAll("[name]").forEach((field) => {
      if (field.type === "submit" || field.disabled || field.dataset.skip !== undefined) return;
      const value = valueOf(field);
      if (value !== undefined) put(body, field.name, value);
    });
    return body;
  }

  function say(form, text) {
    const out = form.querySelector("output.message");
    if (out) out.textContent = text;
  }

  async function submit(event) {
    const form = event.target.closest("form[data-api]");
    if (!form) return;
    event.preventDefault();
    const submitter = event.submitter;
    let url = form.dataset.api;
    if (submitter && submitter.value) url = url.replace("{action}", encodeURIComponent(submitter.value));
    const method = form.dataset.method || "POST";
    let body;
    try {
      body = method === "DELETE" ? undefined : bodyOf(form);
    } catch (e) {
      say(form, e.message);
      return;
    }
    const buttons = form.querySelectorAll("button");
    buttons.forEach((b) => { b.disabled = true; });
    say(form, "");
    try {
      const { ok, answer } = await call(method, url, body);
      if (!ok) {
        say(form, (answer && answer.message) || "error");
        return;
      }
      const then = form.dataset.then || "reload";
      if (then === "reload") {
        await refresh();
      } else {
        window.location.assign(then);
      }
    } catch (e) {
      say(form, String(e));
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // Replaces <main> with the same page fetched again (server-rendered: one way to draw it).
  async function refresh() {
    const response = await fetch(window.location.href, { credentials: "same-origin" });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.querySelector("main");
    const main = document.querySelector("main");
    if (fresh && main) {
      const hadFocus = main.contains(document.activeElement);
      main.replaceWith(fresh);
      // Keyboard users keep their place: the focus goes to the new content, not the top.
      if (hadFocus) fresh.focus();
      follow();
    }
  }

  // <main data-follow="/api/…" data-version="n">: the page refreshes when the resource's
  // version changes (a decision arriving from DingTalk), polled every two seconds.
  let following = null;
  function follow() {
    if (following) clearInterval(following);
    const main = document.querySelector("main[data-follow]");
    if (!main) return;
    following = setInterval(async () => {
      try {
        const { ok, answer } = await call("GET", main.dataset.follow);
        if (ok && answer && String(answer.version) !== main.dataset.version) await refresh();
      } catch (_) { /* the next poll tries again */ }
    }, 2000);
  }

  document.addEventListener("submit", submit);
  document.addEventListener("click", async (event) => {
    const logout = event.target.closest("[data-logout]");
    if (!logout) return;
    await call("POST", "/api/console/logout");
    window.location.assign("/console/login");
  });
  document.addEventListener("DOMContentLoaded", follow);
})();
