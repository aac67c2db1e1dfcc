// jangteo web page: progressive enhancement only; every page works without this file.
// - the post form shows previews of the chosen photos (read as data: URLs, which the
//   page's Content-Security-Policy allows for images) and warns early about too many;
// - actions that end a trade ask for confirmation;
// - pages change without a reload when the node says something happened that they show
//   (GET /events, server-sent events behind the session cookie): a chat's messages and
//   their statuses, the header's unread badges (GET /counts), the inbox, notifications;
// - the chat's send box says "sending…" while the node stamps and delivers.

// Photo previews, in the order they will be posted (the first is the cover); each can be
// moved earlier or later, which reorders the file input's files themselves.
const photos = document.getElementById("photos");
const previews = document.getElementById("previews");
function renderPreviews() {
  previews.replaceChildren();
  const files = Array.from(photos.files);
  files.slice(0, 8).forEach((file, i) => {
    if (!file.type.startsWith("image/")) return;
    const figure = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = file.name;
    const reader = new FileReader();
    reader.addEventListener("load", () => { img.src = String(reader.result); });
    reader.readAsDataURL(file);
    figure.append(img);
    const move = (to, label, text) => {
      const b = document.createElement("button");
      b.type = "button";
      b.textContent = text;
      b.setAttribute("aria-label", label + ": " + file.name);
      b.disabled = to < 0 || to >= files.length;
      b.addEventListener("click", () => {
        const order = Array.from(photos.files);
        const [moved] = order.splice(i, 1);
        order.splice(to, 0, moved);
        const dt = new DataTransfer();
        order.forEach((f) => dt.items.add(f));
        photos.files = dt.files;
        renderPreviews();
      });
      return b;
    };
    const controls = document.createElement("span");
    controls.className = "move";
    controls.append(move(i - 1, previews.dataset.earlier || "earlier", "◀"), move(i + 1, previews.dataset.later || "later", "▶"));
    figure.append(controls);
    previews.append(figure);
  });
}
if (photos && previews) {
  photos.addEventListener("change", renderPreviews);
}

function bindConfirms(root) {
  for (const button of root.querySelectorAll("button[data-action=reject], button[data-action=cancel], button[data-action=dispute]")) {
    button.addEventListener("click", (event) => {
      if (!window.confirm(button.textContent.trim() + "?")) event.preventDefault();
    });
  }
}
bindConfirms(document);

// Which events each page shows, from its path: [kinds, a test on the event's data].
function liveRule(path) {
  const id = (prefix) => path.startsWith(prefix) ? path.slice(prefix.length).split("/")[0] : null;
  const trade = id("/trade/");
  if (trade) return [["trade_updated", "delivery"], (kind, d) => kind === "delivery" || d.trade === trade];
  const listing = id("/listing/");
  if (listing && !path.endsWith("/edit") && !path.endsWith("/retract")) {
    return [["listing_stored", "trade_updated"], (kind, d) => kind === "trade_updated" || d.listing === listing];
  }
  if (path === "/trades" || path === "/mine") return [["trade_updated", "delivery"], () => true];
  if (path === "/" || path === "/search") return [["listing_stored", "sync_progress", "synced", "peer_connected"], () => true];
  if (path === "/network") return [["peer_connected", "peer_banned", "synced", "sync_progress", "relay_reserved", "relay_connected", "relayed_connection", "hole_punch"], () => true];
  return null;
}

// Fetches this page again and swaps its <main>, unless the person is typing in a form.
let refreshTimer = null;
let lastRefresh = 0;
function refreshMain() {
  if (refreshTimer) return;
  const wait = Math.max(0, 1000 - (Date.now() - lastRefresh));
  refreshTimer = setTimeout(async () => {
    refreshTimer = null;
    const active = document.activeElement;
    if (active && active.closest("main form") && active.value) return;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("main");
      const current = document.getElementById("main");
      if (!fresh || !current) return;
      current.replaceWith(fresh);
      bindConfirms(fresh);
      lastRefresh = Date.now();
      document.documentElement.dataset.liveUpdates = String(Number(document.documentElement.dataset.liveUpdates || 0) + 1);
    } catch (_) {
      // The node may be restarting; the next event tries again.
    }
  }, wait);
}

// The chat panel (#chat with a thread id) on a listing, a trade or a conversation's page.
const chat = document.querySelector("#chat[data-thread]");
const chatThread = chat ? chat.dataset.thread : null;

// Fetches this page again and swaps only its message list (the send box keeps what is being
// typed); fetching the page marks the conversation read, which the other side then sees.
let chatTimer = null;
function refreshChat() {
  if (chatTimer) return;
  chatTimer = setTimeout(async () => {
    chatTimer = null;
    try {
      const response = await fetch(location.href, { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return;
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("messages");
      const current = document.getElementById("messages");
      if (!fresh || !current) return;
      const atBottom = current.lastElementChild && current.lastElementChild.getBoundingClientRect().top < window.innerHeight;
      current.replaceWith(fresh);
      const empty = document.querySelector("#chat .empty-chat");
      if (empty && fresh.children.length > 0) empty.remove();
      if (atBottom && fresh.lastElementChild) fresh.lastElementChild.scrollIntoView({ block: "nearest" });
      document.documentElement.dataset.chatUpdates = String(Number(document.documentElement.dataset.chatUpdates || 0) + 1);
      updateCounts();
    } catch (_) {
      // The node may be restarting; the next event tries again.
    }
  }, 150);
}

// The header's unread badges, as the node counts them now.
let countsTimer = null;
function updateCounts() {
  if (countsTimer) return;
  countsTimer = setTimeout(async () => {
    countsTimer = null;
    try {
      const response = await fetch("/counts", { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return;
      const counts = await response.json();
      for (const [id, n] of [["badge-messages", counts.messages], ["badge-notifications", counts.notifications]]) {
        const badge = document.getElementById(id);
        if (!badge) continue;
        badge.textContent = String(n);
        badge.hidden = !(n > 0);
      }
    } catch (_) {
      // Kept as they are until the next event.
    }
  }, 150);
}

// The send box: a message takes about a second (a first contact's stamp, the first
// delivery attempt), so the button says so and the form is not sent twice.
for (const form of document.querySelectorAll("form.chat-send")) {
  form.addEventListener("submit", () => {
    const button = form.querySelector("button[type=submit]");
    if (!button) return;
    setTimeout(() => {
      button.disabled = true;
      button.textContent = form.dataset.sending || button.textContent;
    }, 0);
    form.classList.add("sending");
  });
}

// Blocking asks once more, on top of the form's box.
for (const button of document.querySelectorAll("button[data-action=block]")) {
  button.addEventListener("click", (event) => {
    if (!window.confirm(button.textContent.trim() + "?")) event.preventDefault();
  });
}

const rule = liveRule(location.pathname);
const badges = document.getElementById("badge-messages");
if ((rule || badges || chat) && "EventSource" in window) {
  const [kinds, wanted] = rule || [[], () => false];
  const source = new EventSource("/events");
  for (const kind of kinds) {
    source.addEventListener(kind, (event) => {
      let data = {};
      try { data = JSON.parse(event.data); } catch (_) { return; }
      if (wanted(kind, data)) refreshMain();
    });
  }
  for (const kind of ["message_received", "message_status"]) {
    source.addEventListener(kind, (event) => {
      let data = {};
      try { data = JSON.parse(event.data); } catch (_) { return; }
      if (chatThread && data.thread === chatThread) refreshChat();
      else if (kind === "message_received") {
        updateCounts();
        if (location.pathname === "/inbox") refreshMain();
      }
    });
  }
  source.addEventListener("notification", () => {
    updateCounts();
    if (location.pathname === "/notifications") refreshMain();
  });
  // Events were dropped for this page: what it shows may be stale.
  source.addEventListener("lagged", () => { refreshMain(); updateCounts(); if (chat) refreshChat(); });
  source.addEventListener("subscribed", () => { document.documentElement.dataset.live = "on"; });
}

// "Use my location" next to a location field (#location): the browser's position, typed
// into the field as "lat,lon" for the person to check and save. Hidden without script.
const useLocation = document.getElementById("use-location");
const locationField = document.getElementById("location");
if (useLocation && locationField && "geolocation" in navigator) {
  useLocation.hidden = false;
  useLocation.addEventListener("click", () => {
    navigator.geolocation.getCurrentPosition(
      (p) => { locationField.value = p.coords.latitude.toFixed(5) + "," + p.coords.longitude.toFixed(5); },
      (e) => { locationField.setCustomValidity(e.message); locationField.reportValidity(); },
      { timeout: 10000 },
    );
  });
}
