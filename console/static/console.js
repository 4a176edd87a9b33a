// The guide console page: labels, the login page, arrival cards, today's chart, the offline banner.
// Data arrives over Server-Sent Events from /events; nothing is stored in the browser.
"use strict";

const LABELS = {
  zh: {
    title: "导购台", your_name: "您的姓名", password: "密码或口令", log_in: "登录", log_out: "退出",
    login_failed: "姓名或密码不正确。", login_wait: "尝试次数过多，请稍等一分钟再试。", arrivals: "到店提醒", no_arrivals: "暂无到店会员。", today: "今日客流",
    visits: "到访", reentries: "再次进店", member_visits: "会员到访", take: "我来接待", taken_by: "接待人：",
    arrived_now: "刚刚到店", arrived_min: "{n} 分钟前到店", arrived_at: "{n} 到店", appointment: "预约", last_purchase: "最近购买",
    open_repairs: "维修中", tags: "标签", no_show: "预约未到", call: "请致电会员确认预约。", member: "会员",
    scheduled: "预约时间", early: "提前 {n} 分钟", late: "迟到 {n} 分钟", on_time: "准时",
    broker_lost: "导购台与消息服务器断开，提醒可能延迟。", box_offline: "门店设备离线，暂无到店提醒。",
    box_stopped: "门店设备已停止。", stream_lost: "与导购台的连接中断，正在重连…",
    ack_failed: "未能发送：", hour: "时", appointment_arrival: "预约会员到店",
  },
  en: {
    title: "Guide console", your_name: "Your name", password: "Password or token", log_in: "Log in",
    log_out: "Log out", login_failed: "Wrong name or password.",
    login_wait: "Too many attempts: wait a minute, then try again.", arrivals: "Arrivals",
    no_arrivals: "No arrivals yet.", today: "Today", visits: "Visits", reentries: "Re-entries",
    member_visits: "Member visits", take: "Taking care of it", taken_by: "Taken by ",
    arrived_now: "arrived just now", arrived_min: "arrived {n} min ago", arrived_at: "arrived at {n}", appointment: "Appointment",
    last_purchase: "Last purchase", open_repairs: "Open repairs", tags: "Tags", no_show: "No-show",
    call: "Please call the member about the appointment.", member: "Member", scheduled: "Scheduled",
    early: "{n} min early", late: "{n} min late", on_time: "on time",
    broker_lost: "The console lost the message broker; alerts may be late.",
    box_offline: "The store box is offline: no arrival alerts.", box_stopped: "The store box is stopped.",
    stream_lost: "Connection to the console lost; reconnecting…", ack_failed: "Not sent: ", hour: "h",
    appointment_arrival: "Appointment arrival",
  },
};

const lang = document.documentElement.dataset.lang === "en" ? "en" : "zh";
const L = LABELS[lang];
const t = (key, n) => (L[key] || key).replace("{n}", n);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function translate() {
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
}

function hhmm(iso) {
  // The store's clock time (its zone comes with "hello"), whatever zone the device is set to.
  const d = new Date(iso);
  if (isNaN(d)) return String(iso || "");
  try {
    return new Intl.DateTimeFormat("en-GB", { hour: "2-digit", minute: "2-digit", hourCycle: "h23",
                                              timeZone: state.zone || undefined }).format(d);
  } catch (e) {  // an unknown zone name: the device's own clock
    return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  }
}

// -- state --------------------------------------------------------------------------

const state = { guide: "", zone: "", acks: new Map(), seen: new Set(), broker: true, box: "online", stream: true };

function banner() {
  const node = document.getElementById("banner");
  let reason = null;
  if (!state.stream) reason = "stream_lost";
  else if (!state.broker) reason = "broker_lost";
  else if (state.box === "offline") reason = "box_offline";
  else if (state.box === "stopped") reason = "box_stopped";
  node.hidden = reason === null;
  node.dataset.reason = reason || "";
  node.textContent = reason ? t(reason) : "";
}

// -- cards --------------------------------------------------------------------------

function agoText(ts) {
  const minutes = Math.floor((Date.now() - Date.parse(ts)) / 60000);
  if (minutes >= 60 || minutes < -1) {  // an hour old (or a replayed day ahead of the clock): its time
    return t("arrived_at", hhmm(ts));
  }
  return minutes < 1 ? t("arrived_now") : t("arrived_min", minutes);
}

function field(cls, label, value) {
  if (value === undefined || value === null || value === "" ||
      (Array.isArray(value) && value.length === 0)) return null;
  const text = Array.isArray(value) ? value.join(", ") : String(value);
  return el("p", { class: "field " + cls }, el("span", { class: "label" }, label + " "),
            el("span", { class: "value" }, text));
}

function addCard(card) {
  const cards = document.getElementById("cards");
  card.dataset.shownAt = String(Date.now());
  cards.prepend(card);
  document.getElementById("empty").hidden = true;
}

function arrivalCard(a) {
  const appt = a.appointment;
  const apptText = appt ? [hhmm(appt.scheduled_at), appt.channel, appt.advisor].filter(Boolean).join(" · ") : null;
  const button = el("button", { class: "take", type: "button" }, t("take"));
  const card = el("article", { class: "card arrival", "data-event-id": a.event_id,
                               "data-visit-event-id": a.visit_event_id, "data-member-id": a.member_id,
                               "data-ts": a.ts },
    el("div", { class: "head" }, el("h3", { class: "name" }, a.name || a.member_id || ""),
       a.tier ? el("span", { class: "tier" }, a.tier) : null),
    el("p", { class: "ago" }, agoText(a.ts)),
    apptText ? el("p", { class: "field appointment" }, el("span", { class: "label" }, t("appointment") + " "),
                  el("span", { class: "value" }, apptText)) : null,
    field("last-purchase", t("last_purchase"), a.last_purchase),
    field("open-repairs", t("open_repairs"), a.open_repairs),
    field("tags", t("tags"), a.tags),
    el("p", { class: "field minutes", hidden: "" }),
    el("div", { class: "actions" }, button, el("span", { class: "taken-by" })));
  button.addEventListener("click", () => take(card, button));
  addCard(card);
  const ack = state.acks.get(a.visit_event_id);
  if (ack) showAck(ack);
}

function appointmentAlert(a) {
  const minutes = Number(a.minutes_early);
  const text = minutes > 0 ? t("early", minutes) : minutes < 0 ? t("late", -minutes) : t("on_time");
  const line = [hhmm(a.scheduled_at), a.channel, a.advisor].filter(Boolean).join(" · ") + " — " + text;
  const match = [...document.querySelectorAll(".card.arrival")].find(c => c.dataset.memberId === a.member_id);
  if (match) {
    const p = match.querySelector(".minutes");
    p.hidden = false;
    p.textContent = line;
    return;
  }
  addCard(el("article", { class: "card appointment-card", "data-event-id": a.event_id, "data-member-id": a.member_id },
    el("div", { class: "head" }, el("h3", { class: "name" }, t("appointment_arrival"))),
    field("member", t("member"), a.member_id), el("p", { class: "field minutes" }, line)));
}

function noShowCard(a) {
  addCard(el("article", { class: "card no-show", "data-event-id": a.event_id, "data-member-id": a.member_id },
    el("div", { class: "head" }, el("h3", { class: "name" }, t("no_show"))),
    field("member", t("member"), a.member_id),
    field("scheduled", t("scheduled"), hhmm(a.scheduled_at)),
    el("p", { class: "call" }, t("call"))));
}

function showAck(ack) {
  state.acks.set(ack.visit_event_id, ack);
  for (const card of document.querySelectorAll(".card.arrival")) {
    if (card.dataset.visitEventId !== ack.visit_event_id) continue;
    const button = card.querySelector(".take");
    button.disabled = true;
    card.classList.add("taken");
    card.querySelector(".taken-by").textContent = t("taken_by") + ack.guide;
  }
}

async function take(card, button) {
  button.disabled = true;
  try {
    const response = await fetch("/ack", {
      method: "POST", headers: { "Content-Type": "application/json" }, credentials: "same-origin",
      body: JSON.stringify({ visit_event_id: card.dataset.visitEventId }),
    });
    const body = await response.json();
    if (response.ok || response.status === 409) { showAck(body); return; }
    if (response.status === 401) { location.href = "/login"; return; }
    throw new Error(body.error || response.status);
  } catch (err) {
    button.disabled = false;
    card.querySelector(".taken-by").textContent = t("ack_failed") + err.message;
  }
}

function forgetMember(memberId) {
  // An erased member: every card that names them goes, with the acks of their visits.
  for (const card of [...document.querySelectorAll(".card")]) {
    if (card.dataset.memberId !== memberId) continue;
    if (card.dataset.visitEventId) state.acks.delete(card.dataset.visitEventId);
    card.remove();
  }
  document.getElementById("empty").hidden = document.querySelector("#cards .card") !== null;
}

// -- chart --------------------------------------------------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function drawCounts(c) {
  document.getElementById("total-visits").textContent = c.visits;
  document.getElementById("total-reentries").textContent = c.reentries;
  document.getElementById("total-members").textContent = c.member_visits;
  const hours = Array.isArray(c.by_hour) ? c.by_hour : [];
  const max = Math.max(1, ...hours);
  const W = 240, H = 120, top = 14, base = 104, slot = W / 24, plot = base - top;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", class: "bars",
                             "aria-label": t("visits"), "data-date": c.date || "" });
  chart.append(svg("line", { x1: 0, y1: base, x2: W, y2: base, class: "axis" }));
  hours.forEach((visits, hour) => {
    const h = Math.round((visits / max) * plot * 10) / 10;
    const bar = svg("rect", { x: hour * slot + 1, y: base - h, width: slot - 2, height: h, class: "bar",
                              "data-hour": hour, "data-visits": visits, "data-height": h });
    bar.append(svg("title", {}, `${String(hour).padStart(2, "0")}:00 — ${visits}`));
    chart.append(bar);
    if (visits > 0) chart.append(svg("text", { x: hour * slot + slot / 2, y: base - h - 2, class: "count",
                                               "data-hour": hour }, String(visits)));
    if (hour % 3 === 0) chart.append(svg("text", { x: hour * slot + slot / 2, y: H - 4, class: "hour" },
                                         String(hour)));
  });
  document.getElementById("chart").replaceChildren(chart);
}

// -- stream -------------------------------------------------------------------------

function connect() {
  const source = new EventSource("/events");
  const on = (name, fn) => source.addEventListener(name, e => fn(JSON.parse(e.data)));
  source.onopen = () => { state.stream = true; banner(); };
  source.onerror = () => {
    state.stream = false; banner();
    // A lost session answers 401 and the browser gives up: back to the login page.
    if (source.readyState === EventSource.CLOSED) setTimeout(() => location.reload(), 3000);
  };
  on("hello", h => {
    state.guide = h.guide; state.zone = h.timezone || ""; state.stream = true;
    document.getElementById("who").textContent = h.guide;
    banner();
  });
  on("broker", b => { state.broker = !!b.connected; banner(); });
  on("status", s => { state.box = s.state; banner(); });
  on("counts", drawCounts);
  on("ack", showAck);
  on("erased", e => forgetMember(e.member_id));
  on("alert", a => {
    if (a.event_id && state.seen.has(a.event_id)) return;
    if (a.event_id) state.seen.add(a.event_id);
    if (a.kind === "arrival") arrivalCard(a);
    else if (a.kind === "appointment") appointmentAlert(a);
    else if (a.kind === "no_show") noShowCard(a);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  translate();
  document.title = t("title");
  if (!document.body.classList.contains("console-page")) return;
  connect();
  setInterval(() => {
    for (const card of document.querySelectorAll(".card.arrival")) {
      card.querySelector(".ago").textContent = agoText(card.dataset.ts);
    }
  }, 15000);
});
