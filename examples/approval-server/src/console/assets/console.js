// The SASE approval console's script: forms send JSON to the console API (with the session's
// CSRF token) and then redraw the page, go to another, or show a field of the answer; a page
// can follow a resource and refresh itself when it changes; the logout button ends the
// session; a page's own script calls the API through `window.saseConsole.call`. Hand-written,
// no dependencies; pages carry no inline script.
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
  // A page's own script (loaded after this one, both deferred) calls the API through it.
  window.saseConsole = Object.freeze({ call });

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

  // `a.b.c` names build nested objects, `a.list[2].b` arrays of them.
  function put(target, path, value) {
    const keys = [];
    path.split(".").forEach((part) => {
      const item = /^(.+)\[(\d+)\]$/.exec(part);
      if (item) keys.push(item[1], Number(item[2]));
      else keys.push(part);
    });
    let at = target;
    keys.slice(0, -1).forEach((k, i) => {
      if (typeof at[k] !== "object" || at[k] === null) {
        at[k] = typeof keys[i + 1] === "number" ? [] : {};
      }
      at = at[k];
    });
    at[keys[keys.length - 1]] = value;
  }

  // Arrays without the holes a removed row leaves (JSON would send them as null).
  function compact(value) {
    if (Array.isArray(value)) return value.filter(() => true).map(compact);
    if (typeof value === "object" && value !== null) {
      Object.keys(value).forEach((k) => { value[k] = compact(value[k]); });
    }
    return value;
  }

  function bodyOf(form) {
    const body = {};
    form.querySelectorAll("[name]").forEach((field) => {
      if (field.type === "submit" || field.disabled || field.dataset.skip !== undefined) return;
      const value = valueOf(field);
      if (value !== undefined) put(body, field.name, value);
    });
    return compact(body);
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
    // `{action}` is the submit button's value; `{a.b}` the form's field of that name.
    const url = form.dataset.api.replace(/\{([^}]+)\}/g, (_, name) => {
      if (name === "action" && submitter) return encodeURIComponent(submitter.value);
      const field = form.querySelector(`[name="${name}"]`);
      return field ? encodeURIComponent(field.value) : "";
    });
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
      } else if (then === "show") {
        // An answer shown once (a new enrollment code): its field `data-show-field` goes into
        // the form's <output class="shown">; the page is not redrawn, so it stays on screen.
        const shown = form.querySelector("output.shown");
        if (shown && answer) shown.textContent = String(answer[form.dataset.showField] ?? "");
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

  // [data-when="name=value"]: shown, and its fields sent, only while the form's field `name`
  // has that value (a workflow's DingTalk settings, only for a DingTalk workflow).
  function conditions() {
    document.querySelectorAll("[data-when]").forEach((part) => {
      const [name, value] = part.dataset.when.split("=");
      const form = part.closest("form");
      const field = form && form.querySelector(`[name="${name}"]`);
      const on = !field || field.value === value;
      part.hidden = !on;
      if (part.tagName === "FIELDSET") part.disabled = !on;
      else part.querySelectorAll("input, select, textarea").forEach((f) => { f.disabled = !on; });
    });
  }

  // [data-copy]: the value to the clipboard; the button's neighbouring <output> says so.
  async function copy(button) {
    const out = button.parentElement.querySelector("output");
    try {
      await navigator.clipboard.writeText(button.dataset.copy);
      if (out) out.textContent = button.dataset.copied || "✓";
    } catch (_) {
      // No clipboard (an insecure origin, a refused permission): select the value instead.
      const code = button.parentElement.querySelector("code");
      if (code) window.getSelection().selectAllChildren(code);
    }
  }

  // [data-live-form]: reads the form named by its row's process code from DingTalk, with the
  // app typed in (or the saved workflow's stored secret), and offers its text fields for that
  // row's mapping (the <datalist> named by data-labels).
  async function liveForm(button) {
    const form = button.closest("form");
    const row = button.closest(".mapping") || form;
    const value = (name) => {
      const f = form.querySelector(`[name="${name}"]`);
      return f && f.value !== "" ? f.value : undefined;
    };
    const code = row.querySelector("[data-process-code]");
    const body = {
      process_code: code ? code.value : "",
      workflow: button.dataset.liveForm || undefined,
      dingtalk: {
        client_id: value("workflow.dingtalk.client_id") || "",
        client_secret: value("workflow.dingtalk.client_secret"),
        api_base: value("workflow.dingtalk.api_base"),
      },
    };
    const out = row.querySelector("output.live-form");
    const { ok, answer } = await call("POST", "/api/console/dingtalk/form", body);
    if (!ok) {
      if (out) out.textContent = (answer && answer.message) || "error";
      return;
    }
    const list = document.getElementById(button.dataset.labels);
    if (list) {
      list.replaceChildren(...answer.fields.filter((f) => f.holds_text).map((f) => {
        const option = document.createElement("option");
        option.value = f.label;
        return option;
      }));
    }
    if (out) {
      const fields = answer.fields.map((f) => f.label + (f.required ? " *" : "")).join(", ");
      out.textContent = `${answer.name || body.process_code}: ${fields}`;
    }
  }

  // [data-add-mapping]: another form row from <template id="mapping-row">, its `__i__`
  // (names, ids, labels) replaced by a fresh index; [data-remove-mapping] removes its row.
  let added = 0;
  function addMapping(button) {
    const template = document.getElementById("mapping-row");
    const rows = button.parentElement.querySelector(".mappings");
    if (!template || !rows) return;
    const index = rows.querySelectorAll(".mapping").length + added;
    added += 1;
    const row = template.content.firstElementChild.cloneNode(true);
    row.querySelectorAll("*").forEach((el) => {
      ["id", "for", "name", "list", "data-labels"].forEach((attr) => {
        const v = el.getAttribute(attr);
        if (v !== null) el.setAttribute(attr, v.replaceAll("__i__", String(index)));
      });
    });
    rows.appendChild(row);
    const first = row.querySelector("select, input");
    if (first) first.focus();
  }

  function removeMapping(button) {
    const row = button.closest(".mapping");
    const add = row && row.closest("fieldset") && row.closest("fieldset").querySelector("[data-add-mapping]");
    if (row) row.remove();
    if (add) add.focus();
  }

  document.addEventListener("change", conditions);
  document.addEventListener("DOMContentLoaded", conditions);
  document.addEventListener("click", (event) => {
    const copyButton = event.target.closest("button[data-copy]");
    if (copyButton) copy(copyButton);
    const formButton = event.target.closest("button[data-live-form]");
    if (formButton) liveForm(formButton).catch(() => {});
    const addButton = event.target.closest("button[data-add-mapping]");
    if (addButton) addMapping(addButton);
    const removeButton = event.target.closest("button[data-remove-mapping]");
    if (removeButton) removeMapping(removeButton);
  });
  document.addEventListener("submit", submit);
  document.addEventListener("click", async (event) => {
    const logout = event.target.closest("[data-logout]");
    if (!logout) return;
    await call("POST", "/api/console/logout");
    window.location.assign("/console/login");
  });
  document.addEventListener("DOMContentLoaded", follow);
})();
