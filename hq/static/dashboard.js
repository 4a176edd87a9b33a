// The HQ dashboard page: labels in two languages, the date range, six views fetched from /api/...,
// SVG bar charts drawn here. Every value from the server goes in as text (textContent or an SVG
// attribute), never as HTML. Nothing is stored in the browser.
"use strict";

const LABELS = {
  zh: {
    title: "连锁客流总部", your_name: "您的姓名", password: "密码或口令", log_in: "登录", log_out: "退出",
    login_failed: "姓名或密码不正确。", login_wait: "登录失败次数过多，请稍后再试。", from: "从", to: "至",
    apply: "查询", view_chain: "全连锁", view_stores: "门店", view_conversion: "预约转化", view_no_shows: "未到店",
    view_response: "响应时间", view_checks: "数据核对", chain_title: "全连锁每日客流", day: "日期", visits: "到访",
    reentries: "再次进店", member_visits: "会员到访", unidentified: "未识别", exits: "离店", stores_title: "门店一览",
    stores_hint: "点击门店查看分时客流。", filter_stores: "按门店编号筛选", problems_only: "只看有问题的设备", store: "门店", state: "状态", last_seen: "最后消息", outbox: "待发送", cameras: "摄像头在线", storage: "存储",
    hourly_title: "分时客流", conversion_title: "按预约渠道的到店转化", channel: "渠道", booked: "预约",
    arrived: "到店", no_show: "未到店", cancelled: "已取消", conversion: "转化率", no_shows_title: "待跟进的未到店预约",
    scheduled: "预约时间", member: "会员", appointment: "预约编号", grace: "宽限", response_title: "导购响应时间",
    response_hint: "从到店提醒到第一次“我来接待”。", alerts: "到店提醒", acked: "已接待", checks_title: "与门店自身计数不一致的门店",
    hour: "时段", hq_visits: "总部", store_visits: "门店", difference: "差异", checked_at: "核对时间",
    online: "在线", offline: "离线", stopped: "已停止", unknown: "未知", silent: "失联", no_answer: "门店未应答",
    all_agree: "所有门店的计数与总部一致。", no_rows: "此期间没有数据。", total: "合计", days: "天",
    loading: "加载中…", db_error: "无法读取数据：", minutes: "分钟", none_channel: "（未注明）", ch_unknown: "（未注明）",
    ch_wechat: "微信", ch_phone: "电话", ch_mini_program: "小程序", ch_miniprogram: "小程序", ch_web: "网站",
    ch_walk_in: "到店预约", ch_app: "App", switch_lang: "English", conversion_total: "合计",
    dead_letters: "发送失败", adopted: "已采用门店计数", adopted_key: "采用门店自身的计数",
    adopted_note: "标记的数字包含采用门店自身计数的时段（footfall hq reconcile --adopt）。",
    adopted_title: "个时段采用了门店自身的计数", axis_day: "门店日期", axis_hour: "时段（门店时间）",
    db_password_refused: "数据库拒绝了看板的密码", db_unreachable: "无法连接数据库", db_no_answer: "数据库没有响应",
  },
  en: {
    title: "Chain dashboard", your_name: "Your name", password: "Password or token", log_in: "Log in",
    log_out: "Log out", login_failed: "Wrong name or password.", login_wait: "Too many failed logins; try again later.",
    from: "From", to: "To", apply: "Show", view_chain: "Chain", view_stores: "Stores", view_conversion: "Appointments",
    view_no_shows: "No-shows", view_response: "Response time", view_checks: "Count checks",
    chain_title: "Chain totals by day", day: "Day", visits: "Visits", reentries: "Re-entries",
    member_visits: "Member visits", unidentified: "Unidentified", exits: "Exits", stores_title: "Stores",
    stores_hint: "Click a store for its hours.", filter_stores: "Filter by store id",
    problems_only: "Only boxes with a problem", store: "Store", state: "State", last_seen: "Last seen",
    outbox: "Outbox backlog", cameras: "Cameras streaming", storage: "Storage", hourly_title: "Visits by hour", conversion_title: "Appointment conversion by booking channel",
    channel: "Channel", booked: "Booked", arrived: "Arrived", no_show: "No-show", cancelled: "Cancelled", conversion: "Conversion",
    no_shows_title: "No-shows to follow up", scheduled: "Scheduled", member: "Member", appointment: "Appointment",
    grace: "Grace", response_title: "Guide response time",
    response_hint: "From the arrival alert to the first \u201ctaking care of it\u201d.", alerts: "Arrival alerts",
    acked: "Answered", checks_title: "Stores that disagree with their own counts", hour: "Hour", hq_visits: "HQ",
    store_visits: "Store", difference: "Difference", checked_at: "Checked", online: "online", offline: "offline",
    stopped: "stopped", unknown: "unknown", silent: "silent", no_answer: "did not answer", all_agree:
    "Every store agrees with HQ.", no_rows: "Nothing in this period.", total: "Total", days: "days",
    loading: "Loading…", db_error: "Cannot read the data: ", minutes: "min", none_channel: "(not given)", ch_unknown: "(not given)",
    ch_wechat: "WeChat", ch_phone: "Phone", ch_mini_program: "Mini-program", ch_miniprogram: "Mini-program",
    ch_web: "Web", ch_walk_in: "Walk-in", ch_app: "App", switch_lang: "中文", conversion_total: "Total",
    dead_letters: "Dead letters", adopted: "adopted", adopted_key: "Taken from the box's own counts",
    adopted_note: "Marked figures include hours taken from the box's own counts (footfall hq reconcile --adopt).",
    adopted_title: "hour(s) taken from the box's own counts", axis_day: "Store day", axis_hour: "Hour, store time",
    db_password_refused: "the database refused the dashboard's password", db_unreachable:
    "the database is not reachable", db_no_answer: "the database did not answer",
  },
};

const query = new URLSearchParams(location.search);
const lang = (query.get("lang") || document.documentElement.dataset.lang) === "en" ? "en" : "zh";
const L = LABELS[lang];
const t = (key) => (key in L ? L[key] : key);
document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function translate() {
  for (const node of document.querySelectorAll("[data-i18n]")) {
    if (node.dataset.i18n) node.textContent = t(node.dataset.i18n);
  }
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
    node.setAttribute("placeholder", t(node.dataset.i18nPlaceholder));
  }
  const toggle = document.getElementById("lang-toggle");
  if (toggle) {
    toggle.textContent = t("switch_lang");
    toggle.addEventListener("click", () => {
      const q = new URLSearchParams(location.search);
      q.set("lang", lang === "zh" ? "en" : "zh");
      location.search = q.toString();
    });
  }
}

// -- formatting ------------------------------------------------------------------------

const num = (n) => (n === null || n === undefined ? "—" : Number(n).toLocaleString(lang === "zh" ? "zh-CN" : "en-US"));
const pct = (x) => (x === null || x === undefined ? "—" : `${(x * 100).toFixed(1)}%`);

function stamp(iso) {
  // The time as written in the timestamp (its own offset): "YYYY-MM-DD HH:MM".
  if (!iso) return "—";
  const m = /^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})/.exec(String(iso));
  return m ? `${m[1]} ${m[2]}` : String(iso);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")} ${t("minutes")}`;
}

function channelName(ch) {
  if (ch === null || ch === undefined || ch === "") return t("none_channel");
  const key = `ch_${String(ch).toLowerCase().replace(/[- ]/g, "_")}`;
  return key in L ? L[key] : String(ch);
}

// -- charts ----------------------------------------------------------------------------

// A bar chart of `items` ([{key, label, value, inner, adopted}]): one rect.bar per item (data-key,
// data-visits, data-height; class "adopted" for figures taken from a box's own counts), an optional
// inner bar (member visits), value labels when there is room, and under the axis a label (day or
// hour) for every bar, or for every n-th counted back from the last (today) when they would
// overlap, with `opts.axis` as the axis's caption.
function barChart(items, opts) {
  // Drawn at the width of its box (text stays at its CSS size); scaled if the box changes later.
  const W = Math.max(280, Math.round(opts.width || 720)), H = W < 500 ? 196 : 256;
  const top = 16, bottom = 44, left = 8, right = 8;
  const plotH = H - top - bottom;
  const max = Math.max(1, ...items.map((i) => i.value));
  const step = (W - left - right) / Math.max(1, items.length);
  const barW = Math.max(1, step * 0.72);
  const widest = Math.max(1, ...items.map((i) => String(i.label).length));
  const every = Math.max(1, Math.ceil((widest * 6.5 + 8) / step));  // 11 px text: about 6.5 px a character
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": opts.title || "" });
  root.append(svg("line", { class: "axis", x1: left, x2: W - right, y1: top + plotH, y2: top + plotH }));
  if (opts.axis) {
    root.append(svg("text", { class: "caption", x: (W / 2).toFixed(2), y: H - 4 }, opts.axis));
  }
  items.forEach((item, i) => {
    const h = (item.value / max) * plotH;
    const x = left + i * step + (step - barW) / 2;
    root.append(svg("rect", { class: item.adopted ? "bar adopted" : "bar", x: x.toFixed(2), y: (top + plotH - h).toFixed(2),
      width: barW.toFixed(2), height: h.toFixed(2), "data-key": item.key, "data-visits": item.value,
      "data-height": h.toFixed(2), "data-adopted": item.adopted ? "true" : null },
    svg("title", {}, `${item.label}: ${item.value}${item.adopted ? ` (${t("adopted_key")})` : ""}`)));
    if (item.inner !== undefined) {
      const ih = (item.inner / max) * plotH;
      root.append(svg("rect", { class: "bar inner", x: (x + barW * 0.2).toFixed(2), y: (top + plotH - ih).toFixed(2),
        width: (barW * 0.6).toFixed(2), height: ih.toFixed(2), "data-key": item.key, "data-members": item.inner }));
    }
    if (item.value > 0 && step >= 11) {
      root.append(svg("text", { class: "count", x: (x + barW / 2).toFixed(2), y: (top + plotH - h - 3).toFixed(2),
        "data-key": item.key }, String(item.value)));
    }
    if ((items.length - 1 - i) % every === 0) {
      root.append(svg("text", { class: "tick", x: (x + barW / 2).toFixed(2), y: top + plotH + 14, "data-key": item.key },
        item.label));
    }
  });
  return root;
}

// -- data --------------------------------------------------------------------------------

async function api(path, params) {
  const url = `/api/${path}?${new URLSearchParams(params).toString()}`;
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    location.assign("/login");
    throw new Error("login required");
  }
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  if (!response.ok) {
    const reason = body && body.reason ? `db_${body.reason}` : "";
    throw new Error(reason in L ? t(reason) : (body && body.error) || `HTTP ${response.status}`);
  }
  return body;
}

function fillTable(id, rows, makeRow, emptyKey) {
  const body = document.querySelector(`#${id} tbody`);
  const cols = document.querySelectorAll(`#${id} thead th`).length;
  if (!rows.length) {
    body.replaceChildren(el("tr", { class: "empty" }, el("td", { colspan: cols }, t(emptyKey || "no_rows"))));
    return;
  }
  body.replaceChildren(...rows.map(makeRow));
}

const td = (value, cls) => el("td", { class: cls }, value === null || value === undefined ? "—" : String(value));
const tdNum = (value, cls) => el("td", { class: `num ${cls || ""}`.trim() }, num(value));
// A count that includes hours adopted from a box's own counts: marked, with how many in its tooltip.
const adoptedNum = (value, cls, hours) => {
  const cell = tdNum(value, hours > 0 ? `${cls} adopted` : cls);
  if (hours > 0) {
    cell.title = `${hours} ${t("adopted_title")}`;
    cell.dataset.adoptedHours = String(hours);
  }
  return cell;
};

const state = { view: "chain", from: "", to: "", store: null, loaded: {} };

function spanText() {
  return state.from === state.to ? state.to : `${state.from} – ${state.to}`;
}

const VIEWS = {
  async chain() {
    const data = await api("chain", { from: state.from, to: state.to });
    document.getElementById("chain-span").textContent = spanText();
    const sum = (k) => data.rows.reduce((a, r) => a + (r[k] || 0), 0);
    const totals = document.getElementById("chain-totals");
    totals.replaceChildren(...["visits", "reentries", "member_visits", "unidentified"].map((k) =>
      el("div", { class: "total", "data-total": k }, el("dt", {}, t(k)), el("dd", {}, num(sum(k))))));
    const items = data.rows.map((r) => ({ key: r.day, label: r.day.slice(5), value: r.visits || 0,
      inner: r.member_visits || 0, adopted: r.adopted_hours > 0 }));
    const box = document.getElementById("chain-chart");
    box.replaceChildren(barChart(items, { title: t("chain_title"), axis: t("axis_day"), width: box.clientWidth }));
    fillTable("chain-table", [...data.rows].reverse(), (r) => el("tr", { "data-day": r.day },
      td(r.day), adoptedNum(r.visits, "visits", r.adopted_hours), tdNum(r.reentries, "reentries"),
      tdNum(r.member_visits, "member-visits"), tdNum(r.unidentified, "unidentified")));
    const adopted = data.rows.some((r) => r.adopted_hours > 0);
    document.getElementById("chain-adopted").hidden = !adopted;
    document.getElementById("chain-adopted-key").hidden = !adopted;
  },

  async stores() {
    const data = await api("stores", { day: state.to });
    document.getElementById("stores-day").textContent = data.day;
    state.storeRows = data.rows;
    renderStores();
    if (state.store) await showHourly(state.store);
  },

  async conversion() {
    const data = await api("conversion", { from: state.from, to: state.to });
    document.getElementById("conversion-span").textContent = spanText();
    fillTable("conversion-table", data.rows, (r) => {
      const share = r.conversion === null || r.conversion === undefined ? 0 : Math.max(0, Math.min(1, r.conversion));
      const meter = svg("svg", { class: "meter", viewBox: "0 0 100 8", "aria-hidden": "true" },
        svg("rect", { class: "meter-bg", x: 0, y: 0, width: 100, height: 8 }),
        svg("rect", { class: "meter-fill", x: 0, y: 0, width: (share * 100).toFixed(1), height: 8 }));
      return el("tr", { "data-channel": r.channel === null ? "" : String(r.channel) },
        td(channelName(r.channel), "channel"), tdNum(r.booked, "booked"), tdNum(r.arrived, "arrived"),
        tdNum(r.no_show, "no-show"), tdNum(r.cancelled, "cancelled"),
        el("td", { class: "num conversion" }, el("span", { class: "cell-meter" }, el("span", { class: "pct" }, pct(r.conversion)), meter)));
    });
    const sum = (k) => data.rows.reduce((a, r) => a + (r[k] || 0), 0);
    const booked = sum("booked"), arrived = sum("arrived");
    const foot = document.querySelector("#conversion-table tfoot");
    foot.replaceChildren(...(data.rows.length > 1 ? [el("tr", { class: "total" }, td(t("total"), "channel"),
      tdNum(booked, "booked"), tdNum(arrived, "arrived"), tdNum(sum("no_show"), "no-show"),
      tdNum(sum("cancelled"), "cancelled"), el("td", { class: "num conversion" }, pct(booked ? arrived / booked : null)))] : []));
  },

  async "no-shows"() {
    const data = await api("no-shows", { from: state.from, to: state.to });
    document.getElementById("no-shows-span").textContent = spanText();
    fillTable("no-shows-table", data.rows, (r) => el("tr", { "data-appointment": String(r.appointment_id) },
      td(stamp(r.scheduled_at), "scheduled"), td(r.store_id, "store"), td(r.member_id, "member"),
      td(r.appointment_id, "appointment"), td(channelName(r.channel), "channel"),
      td(r.grace_minutes === null || r.grace_minutes === undefined ? null : `${Math.round(r.grace_minutes)} ${t("minutes")}`, "grace")));
  },

  async response() {
    const data = await api("response-times", { from: state.from, to: state.to });
    document.getElementById("response-span").textContent = spanText();
    fillTable("response-table", data.rows, (r) => el("tr", { "data-store": r.store_id },
      td(r.store_id, "store"), tdNum(r.alerts, "alerts"), tdNum(r.acked, "acked"),
      el("td", { class: "num p50", "data-seconds": r.p50_s ?? "" }, duration(r.p50_s)),
      el("td", { class: "num p95", "data-seconds": r.p95_s ?? "" }, duration(r.p95_s))));
  },

  async checks() {
    const data = await api("disagreements", { from: state.from, to: state.to });
    document.getElementById("checks-span").textContent = spanText();
    fillTable("checks-table", data.rows, (r) => {
      const noAnswer = r.store_visits === null || r.store_visits === undefined;
      if (noAnswer) {
        return el("tr", { class: "no-answer", "data-store": r.store_id },
          td(r.store_id, "store"), td(r.day, "day"),
          el("td", { colspan: 4, class: "reason" }, t("no_answer")), td(stamp(r.checked_at), "checked"));
      }
      const diff = (r.hq_visits || 0) - r.store_visits;
      const diffCell = el("td", { class: "num diff" }, diff > 0 ? `+${diff}` : String(diff));
      if (r.adopted) diffCell.append(" ", el("span", { class: "badge adopted" }, t("adopted")));
      return el("tr", { class: r.adopted ? "differs is-adopted" : "differs", "data-store": r.store_id },
        td(r.store_id, "store"), td(r.day, "day"),
        td(r.hour === null || r.hour === undefined ? null : `${String(r.hour).padStart(2, "0")}:00`, "hour"),
        tdNum(r.hq_visits, "hq"), tdNum(r.store_visits, "store-count"), diffCell, td(stamp(r.checked_at), "checked"));
    }, "all_agree");
  },
};

const KNOWN_STATES = ["online", "offline", "stopped"];

// A box that needs someone: silent, not online, a camera not streaming, or storage in error.
function hasProblem(r) {
  const cameras = Object.values(r.cameras || {});
  return Boolean(r.silent) || r.state !== "online" || cameras.some((c) => c !== "streaming") ||
    (r.storage !== null && r.storage !== undefined && r.storage !== "ok") || r.dead_letters > 0;
}

// The store table from the last answer, through the id filter and the "problems only" box.
function renderStores() {
  const needle = document.getElementById("store-filter").value.trim().toLowerCase();
  const problemsOnly = document.getElementById("problems-only").checked;
  const rows = (state.storeRows || []).filter((r) =>
    String(r.store_id).toLowerCase().includes(needle) && (!problemsOnly || hasProblem(r)));
  document.getElementById("stores-count").textContent = `${rows.length} / ${(state.storeRows || []).length}`;
  fillTable("stores-table", rows, (r) => {
    const known = KNOWN_STATES.includes(r.state) ? r.state : "unknown";
    const stateCell = el("td", { class: "state" }, el("span", { class: `badge state-${known}` }, t(known)));
    if (r.silent) stateCell.append(" ", el("span", { class: "badge silent" }, t("silent")));
    const row = el("tr", { "data-store": r.store_id, class: r.silent ? "is-silent" : null },
      el("td", { class: "store" }, el("button", { type: "button", class: "store-link" }, String(r.store_id))),
      adoptedNum(r.visits, "visits", r.adopted_hours), tdNum(r.reentries, "reentries"),
      tdNum(r.member_visits, "member-visits"), tdNum(r.unidentified, "unidentified"), tdNum(r.exits, "exits"),
      stateCell, td(stamp(r.last_seen), "last-seen"), tdNum(r.outbox_backlog, "outbox"),
      tdNum(r.dead_letters, r.dead_letters > 0 ? "dead-letters warn" : "dead-letters"), camerasCell(r.cameras),
      storageCell(r.storage));
    row.classList.toggle("selected", r.store_id === state.store);
    row.addEventListener("click", () => showHourly(r.store_id));
    return row;
  });
  document.getElementById("stores-adopted").hidden = !rows.some((r) => r.adopted_hours > 0);
}

// "2/3" cameras streaming (each camera's state in the tooltip); red when one is not streaming.
function camerasCell(cameras) {
  const entries = Object.entries(cameras || {});
  if (!entries.length) return tdNum(null, "cameras");
  const streaming = entries.filter(([, state]) => state === "streaming").length;
  return el("td", { class: `num cameras${streaming < entries.length ? " warn" : ""}`,
    title: entries.map(([id, state]) => `${id}: ${state}`).join("\n") }, `${streaming}/${entries.length}`);
}

function storageCell(storage) {
  if (storage === null || storage === undefined) return td(null, "storage");
  return el("td", { class: `storage${storage === "ok" ? "" : " warn"}` }, String(storage));
}

async function showHourly(store) {
  state.store = store;
  const data = await api("hourly", { store, day: state.to });
  for (const row of document.querySelectorAll("#stores-table tbody tr")) {
    row.classList.toggle("selected", row.dataset.store === store);
  }
  document.getElementById("hourly").hidden = false;
  document.getElementById("hourly-store").textContent = data.store_id;
  document.getElementById("hourly-day").textContent = data.day;
  const box = document.getElementById("hourly-chart");
  const adopted = new Set(data.adopted || []);
  const items = data.hours.map((v, h) => ({ key: String(h), label: String(h).padStart(2, "0"), value: v || 0,
    adopted: adopted.has(h) }));
  const chart = barChart(items, { title: `${t("hourly_title")} ${data.store_id}`, axis: t("axis_hour"),
    width: box.clientWidth });
  document.getElementById("hourly-legend").hidden = adopted.size === 0;
  chart.setAttribute("id", "hourly-svg");
  chart.dataset.store = data.store_id;
  box.replaceChildren(chart);
}

function showError(message) {
  const banner = document.getElementById("error");
  banner.textContent = message ? t("db_error") + message : "";
  banner.hidden = !message;
}

async function load(view) {
  state.view = VIEWS[view] ? view : "chain";
  for (const section of document.querySelectorAll(".view")) section.hidden = section.dataset.view !== state.view;
  for (const tab of document.querySelectorAll("#tabs a")) {
    tab.classList.toggle("active", tab.dataset.view === state.view);
    if (tab.dataset.view === state.view) tab.setAttribute("aria-current", "page"); else tab.removeAttribute("aria-current");
  }
  const section = document.getElementById(`view-${state.view}`);
  section.classList.add("loading");
  delete section.dataset.loaded;
  try {
    await VIEWS[state.view]();
    showError("");
    section.dataset.loaded = `${state.from}/${state.to}`;
  } catch (e) {
    showError(e.message);
  } finally {
    section.classList.remove("loading");
  }
}

async function startDashboard() {
  const meta = await api("meta", {});
  document.getElementById("who").textContent = meta.user;
  state.to = query.get("to") || meta.today;
  const back = new Date(`${state.to}T00:00:00Z`);
  back.setUTCDate(back.getUTCDate() - 13);
  state.from = query.get("from") || back.toISOString().slice(0, 10);
  const from = document.getElementById("from"), to = document.getElementById("to");
  from.value = state.from;
  to.value = state.to;
  document.getElementById("range").addEventListener("submit", (ev) => {
    ev.preventDefault();
    if (!from.value || !to.value) return;
    state.from = from.value <= to.value ? from.value : to.value;
    state.to = from.value <= to.value ? to.value : from.value;
    from.value = state.from;
    to.value = state.to;
    const q = new URLSearchParams(location.search);
    q.set("from", state.from);
    q.set("to", state.to);
    history.replaceState(null, "", `?${q.toString()}${location.hash}`);
    load(state.view);
  });
  window.addEventListener("hashchange", () => load(location.hash.slice(1)));
  document.getElementById("store-filter").addEventListener("input", renderStores);
  document.getElementById("problems-only").addEventListener("change", renderStores);
  await load(location.hash.slice(1) || "chain");
  // Today's figures move: reload the open view every minute while the range ends today.
  setInterval(() => { if (state.to === meta.today && !document.hidden) load(state.view); }, 60000);
}

translate();
if (document.body.classList.contains("dashboard")) {
  startDashboard().catch((e) => showError(e.message));
}
