// The guide console page: labels, the login page, arrival cards, today's chart, the banners.
// Data arrives over Server-Sent Events from /events; nothing is stored in the browser.
"use strict";

const LABELS = {
  zh: {
    title: "导购台", your_name: "您的姓名", password: "密码或口令", log_in: "登录", log_out: "退出",
    login_failed: "姓名或密码不正确。", login_wait: "尝试次数过多，请稍等一分钟再试。", arrivals: "到店提醒", no_arrivals: "暂无到店会员。", today: "今日客流",
    visits: "到访", reentries: "再次进店", member_visits: "会员到访", take: "我来接待", taken_by: "接待人：",
    arrived_now: "刚刚到店", arrived_min: "{n} 分钟前到店", arrived_at: "{n} 到店", appointment: "预约", last_purchase: "最近购买",
    open_repairs: "维修中", tags: "标签", phone: "电话", no_show: "预约未到", member: "会员编号",
    call_phone: "请致电会员确认预约：", follow_up: "请跟进该会员错过的预约（客户资料中没有电话）。",
    scheduled: "预约时间", early: "提前 {n} 分钟", late: "迟到 {n} 分钟", on_time: "准时", yes: "是", no: "否",
    broker_lost: "导购台与消息服务器断开，提醒可能延迟。", box_offline: "门店设备离线，暂无到店提醒。",
    box_stopped: "门店设备已停止。", stream_lost: "与导购台的连接中断，正在重连…",
    ack_failed: "未能发送：", hour: "时", appointment_arrival: "预约会员到店",
    health_no_status: "尚未收到门店设备的任何消息：请确认设备在运行，且导购台的消息服务器账号可以读取设备状态。",
    health_no_camera: "没有摄像头在传输画面：门店设备无法计数。",
    health_camera: "摄像头 {camera}：{state}，经过它的顾客不会被计数。",
    health_storage: "门店设备无法写入存储，计数和提醒可能丢失。",
    health_quiet: "营业时间内自 {n} 起没有计到任何人：请检查摄像头。",
    cam_streaming: "正常", cam_reconnecting: "正在重连", cam_ended: "已停止传输",
    ch_wechat: "微信", ch_phone: "电话", ch_mini_program: "小程序", ch_miniprogram: "小程序", ch_web: "网站",
    ch_walk_in: "到店预约", ch_app: "App",
    tier_standard: "普通会员", tier_regular: "普通会员", tier_silver: "银卡", tier_gold: "金卡",
    tier_platinum: "铂金卡", tier_diamond: "钻石卡", tier_black: "黑卡", tier_vip: "VIP",
  },
  en: {
    title: "Guide console", your_name: "Your name", password: "Password or token", log_in: "Log in",
    log_out: "Log out", login_failed: "Wrong name or password.",
    login_wait: "Too many attempts: wait a minute, then try again.", arrivals: "Arrivals",
    no_arrivals: "No arrivals yet.", today: "Today", visits: "Visits", reentries: "Re-entries",
    member_visits: "Member visits", take: "Taking care of it", taken_by: "Taken by ",
    arrived_now: "arrived just now", arrived_min: "arrived {n} min ago", arrived_at: "arrived at {n}", appointment: "Appointment",
    last_purchase: "Last purchase", open_repairs: "Open repairs", tags: "Tags", phone: "Phone", no_show: "No-show",
    member: "Member no.", call_phone: "Please call the member about the appointment: ",
    follow_up: "Please follow up the missed appointment (no phone number in the CRM profile).",
    scheduled: "Scheduled", early: "{n} min early", late: "{n} min late", on_time: "on time", yes: "yes", no: "no",
    broker_lost: "The console lost the message broker; alerts may be late.",
    box_offline: "The store box is offline: no arrival alerts.", box_stopped: "The store box is stopped.",
    stream_lost: "Connection to the console lost; reconnecting…", ack_failed: "Not sent: ", hour: "h",
    appointment_arrival: "Appointment arrival",
    health_no_status: "Nothing heard from the store box yet: check that it runs and that the console's broker user may read its status.",
    health_no_camera: "No camera is streaming: the store box counts nobody.",
    health_camera: "Camera {camera}: {state}; people passing it are not counted.",
    health_storage: "The store box cannot write its storage: counts and alerts may be lost.",
    health_quiet: "Nobody counted since {n} during opening hours: check the cameras.",
    cam_streaming: "streaming", cam_reconnecting: "reconnecting", cam_ended: "stream ended",
    ch_wechat: "WeChat", ch_phone: "Phone", ch_mini_program: "Mini-program", ch_miniprogram: "Mini-program",
    ch_web: "Web", ch_walk_in: "Walk-in", ch_app: "App",
    tier_standard: "Standard", tier_regular: "Regular", tier_silver: "Silver", tier_gold: "Gold",
    tier_platinum: "Platinum", tier_diamond: "Diamond", tier_black: "Black", tier_vip: "VIP",
  },
};

const lang = document.documentElement.dataset.lang === "en" ? "en" : "zh";
const L = LABELS[lang];
// A label, with "{n}" (or each "{name}" of an object) replaced.
const t = (key, n) => {
  const vars = typeof n === "object" && n !== null ? n : { n };
  return (L[key] || key).replace(/\{(\w+)\}/g, (all, name) => (name in vars ? String(vars[name]) : all));
};

// An enumerated value in the page's language ("ch", "tier", "cam"): its label, or as sent if unknown.
function valueName(kind, value) {
  if (value === undefined || value === null || value === "") return "";
  const key = `${kind}_${String(value).trim().toLowerCase().replace(/[- ]/g, "_")}`;
  return key in L ? L[key] : String(value);
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

const state = { guide: "", zone: "", acks: new Map(), seen: new Set(), broker: true, box: "online", stream: true,
                problems: [] };

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
  // What keeps an online box from counting (the console works it out: console/health.py).
  const health = document.getElementById("health");
  const problems = reason === null ? state.problems : [];
  health.replaceChildren(...problems.map(p => el("p", { "data-problem": p.problem, "data-camera": p.camera },
    t("health_" + p.problem, { camera: p.camera, state: valueName("cam", p.state), n: p.since ? hhmm(p.since) : "" }))));
  health.hidden = problems.length === 0;
}

// -- cards --------------------------------------------------------------------------

// Fields of an alert that the contract names; every other top-level field is the CRM profile's.
const CONTRACT_FIELDS = new Set(["event_id", "store_id", "ts", "kind", "member_id", "name", "tier", "visit_event_id",
  "appointment", "appointment_id", "scheduled_at", "grace_minutes", "channel", "advisor", "minutes_early"]);
const PHONE_FIELDS = ["phone", "mobile", "tel", "phone_number"];
const KNOWN_PROFILE = [["last_purchase", "last-purchase"], ["open_repairs", "open-repairs"], ["tags", "tags"]];

function agoText(ts) {
  const minutes = Math.floor((Date.now() - Date.parse(ts)) / 60000);
  if (minutes >= 60 || minutes < -1) {  // an hour old (or a replayed day ahead of the clock): its time
    return t("arrived_at", hhmm(ts));
  }
  return minutes < 1 ? t("arrived_now") : t("arrived_min", minutes);
}

function shown(value) {
  // A profile value as text: scalars and lists of scalars; anything nested is not shown.
  const one = v => (typeof v === "boolean" ? t(v ? "yes" : "no") :
                    typeof v === "string" || typeof v === "number" ? String(v) : null);
  if (Array.isArray(value)) {
    const parts = value.map(one);
    return parts.includes(null) ? null : parts.join(", ");
  }
  return one(value);
}

function field(cls, label, value) {
  const text = value instanceof Node ? value : shown(value);
  if (text === null || text === "") return null;
  return el("p", { class: "field " + cls }, el("span", { class: "label" }, label + " "),
            el("span", { class: "value" }, text));
}

function phoneOf(a) {
  for (const key of PHONE_FIELDS) {
    const value = shown(a[key]);
    if (value) return { key, value };
  }
  return null;
}

function phoneLink(number) {
  return el("a", { href: "tel:" + number.replace(/[^0-9+]/g, ""), class: "tel" }, number);
}

// The CRM profile the alert carries: the phone (unless the card shows it elsewhere), the fields
// the console knows, then any other, as sent.
function profileFields(a, withPhone = true) {
  const phone = withPhone ? phoneOf(a) : null;
  const known = new Set([...PHONE_FIELDS, ...KNOWN_PROFILE.map(([k]) => k)]);
  const others = Object.keys(a).filter(k => !CONTRACT_FIELDS.has(k) && !known.has(k)).sort();
  return [phone ? field("phone", t("phone"), phoneLink(phone.value)) : null,
          ...KNOWN_PROFILE.map(([key, cls]) => field(cls, t(key), a[key])),
          ...others.map(key => {
            const node = field("profile-extra", key.replace(/_/g, " "), a[key]);
            if (node) node.dataset.key = key;
            return node;
          })];
}

function appointmentText(scheduledAt, channel, advisor) {
  return [hhmm(scheduledAt), valueName("ch", channel), advisor].filter(Boolean).join(" · ");
}

function addCard(card) {
  const cards = document.getElementById("cards");
  card.dataset.shownAt = String(Date.now());
  cards.prepend(card);
  document.getElementById("empty").hidden = true;
}

// One entry of a member raises an arrival alert and, with an appointment that day, an appointment
// alert, in either order. Both carry the member and the time of the entry (`ts`): that pair, never
// the member alone, ties them to one card, so an earlier visit's card is never merged into.
function samePassage(card, a) {
  const at = Date.parse(a.ts);
  return card.dataset.memberId === a.member_id && !isNaN(at) && Date.parse(card.dataset.ts) === at;
}

function appointmentLine(a) {
  const minutes = Number(a.minutes_early);
  const text = minutes > 0 ? t("early", minutes) : minutes < 0 ? t("late", -minutes) : t("on_time");
  return el("p", { class: "field minutes", "data-appointment-id": a.appointment_id },
            appointmentText(a.scheduled_at, a.channel, a.advisor) + " — " + text);
}

function addAppointmentLine(card, line) {
  const lines = card.querySelector(".minutes-lines");
  const old = [...lines.children].find(p => p.dataset.appointmentId === line.dataset.appointmentId);
  if (old) old.replaceWith(line); else lines.append(line);
}

function arrivalCard(a) {
  const appt = a.appointment;
  const apptText = appt ? appointmentText(appt.scheduled_at, appt.channel, appt.advisor) : null;
  const button = el("button", { class: "take", type: "button" }, t("take"));
  const card = el("article", { class: "card arrival", "data-event-id": a.event_id,
                               "data-visit-event-id": a.visit_event_id, "data-member-id": a.member_id,
                               "data-ts": a.ts },
    el("div", { class: "head" }, el("h3", { class: "name" }, a.name || a.member_id || ""),
       a.tier ? el("span", { class: "tier", "data-tier": a.tier }, valueName("tier", a.tier)) : null),
    el("p", { class: "ago" }, agoText(a.ts)),
    apptText ? el("p", { class: "field appointment" }, el("span", { class: "label" }, t("appointment") + " "),
                  el("span", { class: "value" }, apptText)) : null,
    ...profileFields(a),
    el("div", { class: "minutes-lines" }),
    el("div", { class: "actions" }, button, el("span", { class: "taken-by" })));
  button.addEventListener("click", () => take(card, button));
  // Its appointment alert came first: its lines move here, its stand-in card goes.
  for (const early of [...document.querySelectorAll(".card.appointment-card")]) {
    if (!samePassage(early, a)) continue;
    for (const line of [...early.querySelectorAll(".minutes")]) addAppointmentLine(card, line);
    early.remove();
  }
  addCard(card);
  const ack = state.acks.get(a.visit_event_id);
  if (ack) showAck(ack);
}

function appointmentAlert(a) {
  const line = appointmentLine(a);
  const match = [...document.querySelectorAll(".card.arrival, .card.appointment-card")].find(c => samePassage(c, a));
  if (match) {
    addAppointmentLine(match, line);
    return;
  }
  // The arrival alert has not come (yet): a card of its own until it does.
  addCard(el("article", { class: "card appointment-card", "data-event-id": a.event_id, "data-member-id": a.member_id,
                          "data-ts": a.ts },
    el("div", { class: "head" }, el("h3", { class: "name" }, t("appointment_arrival"))),
    field("member", t("member"), a.member_id), el("div", { class: "minutes-lines" }, line)));
}

function noShowCard(a) {
  const phone = phoneOf(a);
  addCard(el("article", { class: "card no-show", "data-event-id": a.event_id, "data-member-id": a.member_id },
    el("p", { class: "kind" }, t("no_show")),
    el("div", { class: "head" }, el("h3", { class: "name" }, a.name || a.member_id || ""),
       a.tier ? el("span", { class: "tier", "data-tier": a.tier }, valueName("tier", a.tier)) : null),
    a.name ? field("member", t("member"), a.member_id) : null,
    field("scheduled", t("scheduled"), appointmentText(a.scheduled_at, a.channel, a.advisor)),
    ...profileFields(a, false),
    phone ? el("p", { class: "call" }, t("call_phone"), phoneLink(phone.value))
          : el("p", { class: "call" }, t("follow_up"))));
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
  on("health", h => { state.problems = Array.isArray(h.problems) ? h.problems : []; banner(); });
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
