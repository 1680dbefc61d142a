// The policy editor's script (Terminal Management → Anti-uninstallation Policy): builds the
// policy from the form exactly as the console API takes it, redraws the live preview of the
// agent's dialog as the admin types, previews a change (who gains and who loses protection),
// saves and deletes. Text goes into the page with textContent only. Hand-written, no
// dependencies; the page carries no inline script.
"use strict";

(function () {
  const form = document.getElementById("policy-form");
  if (!form) return;
  let T = {};
  try { T = JSON.parse(form.dataset.texts || "{}"); } catch (_) { T = {}; }
  const errors = document.getElementById("policy-errors");
  const section = document.getElementById("change-preview");
  const previewBody = document.getElementById("change-preview-body");
  const confirmDelete = document.getElementById("confirm-delete");

  // The API call with the session's CSRF token, as every console page makes it (console.js).
  const call = window.saseConsole.call;

  const field = (name) => {
    const f = form.elements.namedItem(name);
    return f instanceof Element ? f : null;
  };
  const text = (name) => { const f = field(name); return f ? f.value : ""; };
  const checked = (name) => { const f = field(name); return Boolean(f && f.checked); };
  const lines = (name) => text(name).split("\n").map((s) => s.trim()).filter((s) => s !== "");

  // The policy as the API takes it (sase-policy's `Policy`): booleans, a number, arrays for
  // lines, every prompt text (an empty one is the API's to name), `approval.workflow` only
  // when one is chosen. Prompt locales the form does not edit are kept as they were.
  function policy() {
    let prompt = {};
    try { prompt = JSON.parse(text("extra-prompts") || "{}") || {}; } catch (_) { prompt = {}; }
    form.querySelectorAll("[data-preview-source]").forEach((f) => {
      const source = f.dataset.previewSource;
      const dot = source.lastIndexOf(".");
      const locale = source.slice(0, dot);
      if (!prompt[locale] || typeof prompt[locale] !== "object") prompt[locale] = {};
      prompt[locale][source.slice(dot + 1)] = f.value;
    });
    const raw = text("policy.priority").trim();
    const p = {
      id: (form.dataset.id || text("policy.id")).trim(),
      name: text("policy.name"),
      enabled: checked("policy.enabled"),
      priority: raw === "" ? 0 : Number(raw),
      switches: {
        anti_uninstall: checked("policy.switches.anti_uninstall"),
        auto_start: checked("policy.switches.auto_start"),
        anti_logoff: checked("policy.switches.anti_logoff"),
      },
      scope: {
        groups: lines("policy.scope.groups"),
        departments: lines("policy.scope.departments"),
        device_tags: lines("policy.scope.device_tags"),
      },
      whitelist: lines("policy.whitelist"),
      approval: { allow_filing: checked("policy.approval.allow_filing") },
      prompt,
    };
    const workflow = text("policy.approval.workflow");
    if (workflow !== "") p.approval.workflow = workflow;
    return p;
  }

  const el = (tag, className, content) => {
    const e = document.createElement(tag);
    if (className) e.className = className;
    if (content !== undefined) e.textContent = String(content);
    return e;
  };

  function clearErrors() {
    errors.replaceChildren();
    form.querySelectorAll("[aria-invalid]").forEach((f) => f.removeAttribute("aria-invalid"));
  }

  // The API's refusal: a 422's problems each with its path (the fields it names are marked),
  // else its message.
  function showError(answer) {
    clearErrors();
    const problems = answer && Array.isArray(answer.problems) ? answer.problems : [];
    if (problems.length === 0) {
      errors.append(el("p", "", (answer && answer.message) || T.error || "error"));
      errors.scrollIntoView({ block: "nearest" });
      return;
    }
    errors.append(el("p", "", T.problems || ""));
    const list = el("ul", "problems");
    problems.forEach((problem) => {
      const item = el("li");
      item.append(el("code", "", problem.path), " ", el("span", "", problem.message));
      list.append(item);
      // `put.scope` (a preview) and `policy.scope` (a save) name the form's `policy.scope.*`.
      const at = "policy." + String(problem.path || "").replace(/^(put|policy)\.?/, "");
      form.querySelectorAll("[name^='policy.']").forEach((f) => {
        if (f.name === at || f.name.startsWith(at + ".")) f.setAttribute("aria-invalid", "true");
      });
    });
    errors.append(list);
    errors.scrollIntoView({ block: "nearest" });
  }

  function outcome(o) {
    const cell = el("td");
    if (!o) return cell;
    cell.append(el("strong", "", (T.effects && T.effects[o.effect]) || o.effect));
    const notes = [(T.reasons && T.reasons[o.reason]) || o.reason];
    if (o.policy) notes.push(`${T.policy || "policy"} ${o.policy}`);
    if (o.workflow) notes.push(`${T.workflow || "workflow"} ${o.workflow}`);
    cell.append(el("div", "note", notes.join(" · ")));
    return cell;
  }

  let previewed = null;

  // Who gains and who loses protection if the change is saved.
  function showPreview(kind, preview) {
    previewed = kind;
    previewBody.replaceChildren();
    previewBody.append(el("p", "lead", kind === "delete" ? T.if_deleted : T.if_saved));
    const counts = el("ul", "counts");
    [[T.devices, preview.devices, ""], [T.gain, preview.gains_protection, "gains"],
      [T.lose, preview.loses_protection, "loses"]].forEach(([label, n, cls]) => {
      const item = el("li", cls);
      item.append(el("strong", "", n), " ", el("span", "", label));
      counts.append(item);
    });
    previewBody.append(counts);
    const changes = Array.isArray(preview.changes) ? preview.changes : [];
    if (changes.length === 0) {
      previewBody.append(el("p", "", T.none));
    } else {
      const table = el("table", "changes");
      const head = el("tr");
      [T.device, T.user, T.change, T.before, T.after].forEach((h) => {
        const th = el("th", "", h);
        th.scope = "col";
        head.append(th);
      });
      const thead = el("thead");
      thead.append(head);
      table.append(thead);
      const body = el("tbody");
      changes.forEach((c) => {
        const row = el("tr");
        row.append(el("td", "mono", c.device_id), el("td", "", c.user_name ? `${c.user_name} (${c.user_id})` : c.user_id));
        const change = el("td");
        change.append(el("span", `change ${c.change}`, (T.changes && T.changes[c.change]) || c.change));
        row.append(change, outcome(c.before), outcome(c.after));
        body.append(row);
      });
      table.append(body);
      previewBody.append(table);
    }
    if (confirmDelete) confirmDelete.hidden = kind !== "delete";
    section.hidden = false;
    section.scrollIntoView({ block: "start" });
  }

  // Buttons are disabled while a call is out.
  async function busy(work) {
    const buttons = document.querySelectorAll("main button");
    buttons.forEach((b) => { b.disabled = true; });
    try {
      await work();
    } catch (e) {
      showError({ message: String(e) });
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  async function preview(change) {
    clearErrors();
    const { ok, answer } = await call("POST", "/api/console/policies/preview", change);
    if (!ok) {
      section.hidden = true;
      showError(answer);
      return;
    }
    showPreview(change.delete !== undefined ? "delete" : "put", answer || {});
  }

  const url = (id) => `/api/console/policies/${encodeURIComponent(id)}`;
  const version = () => Number(form.dataset.version || "0");

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(async () => {
      clearErrors();
      const p = policy();
      const { ok, answer } = await call("PUT", url(p.id), { policy: p, version: version() });
      if (!ok) {
        showError(answer);
        return;
      }
      window.location.assign("/console/policies");
    });
  });

  const previewChange = document.getElementById("preview-change");
  if (previewChange) previewChange.addEventListener("click", () => busy(() => preview({ put: policy() })));

  const previewDelete = document.getElementById("preview-delete");
  if (previewDelete) {
    previewDelete.addEventListener("click", () => busy(() => preview({ delete: form.dataset.id })));
  }

  if (confirmDelete) {
    confirmDelete.addEventListener("click", () => busy(async () => {
      clearErrors();
      const { ok, answer } = await call("DELETE", `${url(form.dataset.id)}?version=${version()}`);
      if (!ok) {
        showError(answer);
        return;
      }
      window.location.assign("/console/policies");
    }));
  }

  // The live preview of the agent's dialog follows the prompt's fields.
  form.addEventListener("input", (event) => {
    const source = event.target.dataset && event.target.dataset.previewSource;
    if (source) {
      document.querySelectorAll("[data-preview]").forEach((e) => {
        if (e.dataset.preview === source) e.textContent = event.target.value;
      });
    }
    // A preview of saving no longer says what saving would do.
    if (previewed === "put" && !previewBody.querySelector(".stale")) {
      previewBody.prepend(el("p", "stale", T.stale));
    }
  });

  // The workflow is only meaningful when employees may file, and only workflows of the
  // kind chosen first (DingTalk or built-in) are offered: a choice of the other kind is
  // dropped. A workflow no longer in force (no data-kind) stays offered.
  const filing = field("policy.approval.allow_filing");
  const workflow = field("policy.approval.workflow");
  const kind = document.getElementById("approval-kind");
  const sync = () => {
    if (filing && workflow) workflow.disabled = !filing.checked;
    if (kind) kind.disabled = Boolean(filing) && !filing.checked;
    if (!kind || !workflow) return;
    workflow.querySelectorAll("option[data-kind]").forEach((o) => {
      o.hidden = o.dataset.kind !== kind.value;
      o.disabled = o.hidden;
    });
    const chosen = workflow.selectedOptions[0];
    if (chosen && chosen.disabled) workflow.value = "";
  };
  if (filing) filing.addEventListener("change", sync);
  if (kind) kind.addEventListener("change", sync);
  sync();
})();
