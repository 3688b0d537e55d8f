// The tenantry chat page: plain JS, no build step. Talks to /v1/* with the API key (if
// the server needs one) and reads streamed replies from /v1/chat/stream (Server-Sent Events).
"use strict";

const $ = (id) => document.getElementById(id);
const page = { auth: false, apiKey: sessionStorage.getItem("tenantry.apiKey") || "", user: null };

function headers() {
  const h = { "Content-Type": "application/json" };
  if (page.apiKey) h["X-API-Key"] = page.apiKey;
  return h;
}

function currentUser() {
  return page.auth ? page.user : ($("userId").value.trim() || "default");
}

function currentSession() {
  return $("sessionId").value.trim() || "default";
}

function showError(text) {
  $("status").textContent = text || "";
}

async function errorText(response) {
  try {
    const body = await response.json();
    return `${response.status} ${body.error.type}: ${body.error.message}`;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

function addMessage(role, text) {
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  if (!response.ok) throw new Error(await errorText(response));
  return response;
}

async function loadSessions() {
  const user = currentUser();
  if (!user) return;
  const list = $("sessions");
  try {
    const body = await (await api(`/v1/users/${encodeURIComponent(user)}/sessions`)).json();
    list.replaceChildren();
    for (const session of body.sessions) {
      const item = document.createElement("li");
      if (session === currentSession()) item.className = "current";
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = session;
      button.addEventListener("click", () => openSession(session));
      item.appendChild(button);
      list.appendChild(item);
    }
  } catch (error) {
    showError(error.message);
  }
}

async function openSession(session) {
  $("sessionId").value = session;
  $("log").replaceChildren();
  const user = encodeURIComponent(currentUser());
  const path = `/v1/users/${user}/sessions/${encodeURIComponent(session)}/messages?limit=200`;
  try {
    const body = await (await api(path)).json();
    for (const m of body.messages) {
      if (m.role === "user" || (m.role === "assistant" && m.content)) addMessage(m.role, m.content);
    }
  } catch (error) {
    showError(error.message);
  }
  loadSessions();
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

async function send(event) {
  event.preventDefault();
  const text = $("message").value;
  if (!text.trim()) return;
  showError("");
  $("message").value = "";
  $("send").disabled = true;
  addMessage("user", text);
  const bubble = addMessage("assistant", "");
  const body = { message: text, session_id: currentSession() };
  if (!page.auth) body.user_id = currentUser();
  try {
    const response = await api("/v1/chat/stream", { method: "POST", body: JSON.stringify(body) });
    await readEvents(response, (name, data) => {
      if (name === "delta") bubble.textContent += data.text;
      else if (name === "done") bubble.textContent = data.reply;
      else if (name === "error") showError(`${data.error.type}: ${data.error.message}`);
    });
  } catch (error) {
    bubble.remove();
    showError(error.message);
  } finally {
    $("send").disabled = false;
    $("message").focus();
  }
  loadSessions();
}

async function logIn() {
  page.apiKey = $("apiKey").value.trim();
  try {
    const me = await (await api("/v1/me")).json();
    page.user = me.user_id;
    sessionStorage.setItem("tenantry.apiKey", page.apiKey);
    $("whoami").textContent = `Signed in as ${me.user_id}${me.admin ? " (admin)" : ""}`;
    $("login-box").classList.add("hidden");
    showError("");
    loadSessions();
  } catch (error) {
    page.apiKey = "";
    sessionStorage.removeItem("tenantry.apiKey");
    showError(error.message);
  }
}

async function start() {
  const info = await (await fetch("/v1/info")).json();
  page.auth = info.auth;
  $("chat").addEventListener("submit", send);
  $("newSession").addEventListener("click", () => {
    $("sessionId").value = `s-${Date.now().toString(36)}`;
    $("log").replaceChildren();
    loadSessions();
  });
  $("sessionId").addEventListener("change", () => openSession(currentSession()));
  if (info.auth) {
    $("login-box").classList.remove("hidden");
    $("login").addEventListener("click", logIn);
    $("whoami").textContent = "Log in with an API key.";
    if (page.apiKey) {
      $("apiKey").value = page.apiKey;
      logIn();
    }
  } else {
    $("user-box").classList.remove("hidden");
    $("whoami").textContent = "Open mode: pick any user.";
    $("userId").addEventListener("change", () => openSession(currentSession()));
    loadSessions();
  }
  document.body.dataset.ready = "true";
}

start();
