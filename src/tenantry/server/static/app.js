// The tenantry chat page: plain JS modules, no build step, nothing from elsewhere. Talks to
// /v1/* with the API key (if the server needs one) and reads streamed replies from
// /v1/chat/stream (Server-Sent Events). Text from the server only ever reaches the page
// through textContent or the Markdown renderer, which builds nodes, never HTML.
"use strict";

import { renderMarkdown } from "./markdown.js";

const $ = (id) => document.getElementById(id);
const SAVED = { user: "tenantry.user", session: "tenantry.session", key: "tenantry.apiKey",
                labels: "tenantry.labels" };
const page = { auth: false, apiKey: "", user: null, sessions: [], streaming: null, errors: new Map(),
               view: 0 };  // view: bumped whenever the user or session shown changes

// --- what the browser keeps between visits (never the key, unless asked to) ---------------

function saved(name) {
  try { return localStorage.getItem(SAVED[name]); } catch (_) { return null; }
}

function save(name, value) {
  try {
    if (value === null) localStorage.removeItem(SAVED[name]);
    else localStorage.setItem(SAVED[name], value);
  } catch (_) { /* storage disabled: nothing is remembered */ }
}

function labels() {
  try { return JSON.parse(saved("labels") || "{}"); } catch (_) { return {}; }
}

function labelOf(session) {
  return labels()[`${currentUser()}\n${session}`] || session;
}

function setLabel(session, label) {
  const all = labels();
  const key = `${currentUser()}\n${session}`;
  if (label && label !== session) all[key] = label;
  else delete all[key];
  save("labels", JSON.stringify(all));
}

// --- errors: each has a source, and goes when that source next succeeds -------------------

function setError(source, text) {
  page.errors.delete(source);
  page.errors.set(source, text);
  renderErrors();
}

function clearError(...sources) {
  for (const source of sources.length ? sources : [...page.errors.keys()]) page.errors.delete(source);
  renderErrors();
}

function renderErrors() {
  const texts = [...page.errors.values()];
  $("status").textContent = texts.length ? texts[texts.length - 1] : "";
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${response.status} ${body.error.type}: ${body.error.message}`;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

class HttpError extends Error {
  constructor(status, text) {
    super(text);
    this.status = status;
  }
}

async function api(path, options = {}) {
  const headers = { "Content-Type": "application/json" };
  if (page.apiKey) headers["X-API-Key"] = page.apiKey;
  let response;
  try {
    response = await fetch(path, { ...options, headers });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new HttpError(0, "the server cannot be reached; is it running?");
  }
  if (!response.ok) throw new HttpError(response.status, await errorText(response));
  return response;
}

// --- who and which session ---------------------------------------------------------------

function currentUser() {
  return page.auth ? page.user : ($("userId").value.trim() || "default");
}

function currentSession() {
  return $("sessionId").value.trim() || "default";
}

function userPath(...parts) {
  return `/v1/users/${[currentUser(), ...parts].map(encodeURIComponent).join("/")}`;
}

function canChat() {
  return !page.auth || Boolean(page.user);
}

function updateControls() {
  const ready = canChat();
  const streaming = page.streaming !== null;
  $("send").disabled = !ready || streaming;
  $("message").disabled = !ready;
  $("send").classList.toggle("hidden", streaming);
  $("stop").classList.toggle("hidden", !streaming);
  for (const id of ["newSession", "sessionId", "renameSession", "deleteSession"]) $(id).disabled = !ready;
  $("sessionTitle").textContent = ready ? labelOf(currentSession()) : "";
}

// --- the conversation ------------------------------------------------------------------------

function addTurn(role, text) {
  const turn = document.createElement("div");
  turn.className = `turn ${role}`;
  const bubble = document.createElement("div");
  bubble.className = `msg ${role}`;
  if (role === "assistant") bubble.appendChild(renderMarkdown(text));
  else bubble.textContent = text;
  turn.appendChild(bubble);
  $("log").appendChild(turn);
  $("log").scrollTop = $("log").scrollHeight;
  return { turn, bubble };
}

function addNote(turn, text, action) {
  const note = document.createElement("div");
  note.className = "note";
  note.textContent = text;
  if (action) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = action.label;
    button.addEventListener("click", action.run);
    note.appendChild(button);
  }
  turn.appendChild(note);
  return note;
}

function clearLog() {
  $("log").replaceChildren();
}

async function loadSessions() {
  const list = $("sessions");
  if (!canChat()) {
    list.replaceChildren();
    return;
  }
  const view = page.view;
  let body;
  try {
    body = await (await api(userPath("sessions"))).json();
  } catch (error) {
    if (view !== page.view) return; // another user or session is shown by now
    page.sessions = [];
    list.replaceChildren();
    setError("sessions", error.message);
    return;
  }
  if (view !== page.view) return;
  page.sessions = body.sessions;
  clearError("sessions");
  list.replaceChildren();
  for (const session of page.sessions) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = labelOf(session);
    if (session === currentSession()) {
      item.className = "current";
      button.setAttribute("aria-current", "true");
    }
    button.addEventListener("click", () => {
      closeSidebar();
      openSession(session);
    });
    item.appendChild(button);
    list.appendChild(item);
  }
}

async function openSession(session) {
  const view = ++page.view;
  $("sessionId").value = session;
  save("session", session);
  clearLog();
  updateControls();
  if (!canChat()) return;
  let messages = [];
  try {
    messages = (await (await api(`${userPath("sessions", session)}/messages?limit=200`)).json()).messages;
    if (view === page.view) clearError("history");
  } catch (error) {
    if (view !== page.view) return;
    if (error.status === 404) clearError("history"); // a session with nothing stored yet
    else setError("history", error.message);
  }
  if (view !== page.view) return; // a later choice won: show only its history
  for (const m of messages) {
    if (m.role === "user" || (m.role === "assistant" && m.content)) addTurn(m.role, m.content);
  }
  await loadSessions();
}

// Parse a Server-Sent Events stream, calling onEvent(name, data) for each event.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
      }
      onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

async function send(text) {
  if (!text.trim() || page.streaming !== null || !canChat()) return;
  const session = currentSession();
  const mine = addTurn("user", text);
  const reply = addTurn("assistant", "");
  reply.bubble.setAttribute("aria-busy", "true");
  const body = { message: text, session_id: session };
  if (!page.auth) body.user_id = currentUser();
  page.streaming = new AbortController();
  updateControls();
  let said = "";
  let failure = null;
  try {
    const response = await api("/v1/chat/stream", {
      method: "POST", body: JSON.stringify(body), signal: page.streaming.signal,
    });
    await readEvents(response, (name, data) => {
      if (name === "delta") said += data.text;
      else if (name === "done") said = data.reply;
      else if (name === "error") failure = `${data.error.type}: ${data.error.message}`;
      reply.bubble.replaceChildren(renderMarkdown(said));
    });
  } catch (error) {
    failure = error.name === "AbortError" ? "stopped" : error.message;
  } finally {
    reply.bubble.removeAttribute("aria-busy");
    page.streaming = null;
    updateControls();
  }
  if (failure === "stopped") {
    addNote(reply.turn, "Stopped. The server may still finish this reply; reopen the session to see it.");
  } else if (failure !== null) {
    if (!said) reply.turn.remove();
    markFailed(mine, text, failure);
  } else {
    clearError("send");
  }
  if (!$("message").value) $("message").focus();
  await loadSessions();
}

function markFailed(mine, text, failure) {
  mine.turn.classList.add("failed");
  setError("send", failure);
  if (!$("message").value) $("message").value = text; // keep what was typed
  addNote(mine.turn, "Not sent.", {
    label: "Retry",
    run: () => {
      mine.turn.remove();
      if ($("message").value === text) $("message").value = "";
      send(text);
    },
  });
}

function submit(event) {
  event.preventDefault();
  const text = $("message").value;
  if (!text.trim()) return;
  $("message").value = "";
  send(text);
}

function stop() {
  if (page.streaming !== null) page.streaming.abort();
}

// --- sessions: new, rename (a label kept in this browser), delete ------------------------------

function newSession() {
  openSession(`s-${Date.now().toString(36)}`);
  $("message").focus();
}

function startRename() {
  $("renameInput").value = labelOf(currentSession());
  $("renameForm").classList.remove("hidden");
  $("sessionTitle").classList.add("hidden");
  $("renameSession").classList.add("hidden");
  $("renameInput").focus();
  $("renameInput").select();
}

function endRename() {
  $("renameForm").classList.add("hidden");
  $("sessionTitle").classList.remove("hidden");
  $("renameSession").classList.remove("hidden");
  updateControls();
  $("renameSession").focus();
}

function saveRename(event) {
  event.preventDefault();
  setLabel(currentSession(), $("renameInput").value.trim());
  endRename();
  loadSessions();
}

async function deleteSession() {
  const session = currentSession();
  if (!window.confirm(`Delete the session "${labelOf(session)}" and all its messages?`)) return;
  try {
    await api(userPath("sessions", session), { method: "DELETE" });
    clearError("delete");
  } catch (error) {
    if (error.status !== 404) {
      setError("delete", error.message);
      return;
    }
  }
  setLabel(session, "");
  const others = page.sessions.filter((s) => s !== session);
  await openSession(others.length ? others[0] : "default");
}

// --- auth ------------------------------------------------------------------------------------

async function logIn(event) {
  if (event) event.preventDefault();
  page.apiKey = $("apiKey").value.trim();
  try {
    const me = await (await api("/v1/me")).json();
    page.user = me.user_id;
    save("key", $("rememberKey").checked ? page.apiKey : null);
    $("whoami").textContent = `Signed in as ${me.user_id}${me.admin ? " (admin)" : ""}`;
    $("login-box").classList.add("hidden");
    $("logout").classList.remove("hidden");
    $("apiKey").value = "";
    clearError();
    await openSession(saved("session") || "default");
    $("message").focus();
  } catch (error) {
    page.apiKey = "";
    page.user = null;
    save("key", null);
    setError("login", error.message);
    updateControls();
  }
}

function logOut() {
  stop();
  page.apiKey = "";
  page.user = null;
  page.sessions = [];
  save("key", null);
  clearError();
  clearLog();
  $("sessions").replaceChildren();
  $("logout").classList.add("hidden");
  $("login-box").classList.remove("hidden");
  $("rememberKey").checked = false;
  $("whoami").textContent = "Log in with an API key.";
  updateControls();
  $("apiKey").focus();
}

// --- the narrow layout's sidebar ---------------------------------------------------------------

function setSidebar(open) {
  document.body.classList.toggle("sidebar-open", open);
  $("sidebarToggle").setAttribute("aria-expanded", String(open));
}

function closeSidebar() {
  if (document.body.classList.contains("sidebar-open")) {
    setSidebar(false);
    $("sidebarToggle").focus();
  }
}

// --- start -------------------------------------------------------------------------------------

function wire() {
  $("chat").addEventListener("submit", submit);
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) submit(event);
  });
  $("stop").addEventListener("click", stop);
  $("newSession").addEventListener("click", newSession);
  $("sessionId").addEventListener("change", () => openSession(currentSession()));
  $("renameSession").addEventListener("click", startRename);
  $("renameForm").addEventListener("submit", saveRename);
  $("renameCancel").addEventListener("click", endRename);
  $("renameInput").addEventListener("keydown", (event) => {
    if (event.key === "Escape") endRename();
  });
  $("deleteSession").addEventListener("click", deleteSession);
  $("sidebarToggle").addEventListener("click", () => {
    setSidebar(!document.body.classList.contains("sidebar-open"));
    if (document.body.classList.contains("sidebar-open")) $("sessionId").focus();
  });
  $("sidebarClose").addEventListener("click", closeSidebar);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeSidebar();
  });
}

async function start() {
  wire();
  let info = { auth: false };
  try {
    info = await (await api("/v1/info")).json();
  } catch (error) {
    setError("info", error.message);
  }
  page.auth = info.auth;
  $("sessionId").value = saved("session") || "default";
  if (info.auth) {
    $("login-box").classList.remove("hidden");
    $("login-box").addEventListener("submit", logIn);
    $("logout").addEventListener("click", logOut);
    $("whoami").textContent = "Log in with an API key.";
    updateControls();
    const key = saved("key");
    if (key) {
      $("apiKey").value = key;
      $("rememberKey").checked = true;
      await logIn();
    }
  } else {
    $("user-box").classList.remove("hidden");
    $("whoami").textContent = "Open mode: pick any user.";
    $("userId").value = saved("user") || "default";
    $("userId").addEventListener("change", () => {
      save("user", currentUser());
      clearError();
      openSession(currentSession());
    });
    await openSession(currentSession());
  }
  document.body.dataset.ready = "true";
}

start();
