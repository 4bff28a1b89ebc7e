// The demo page: every pick re-ranks with the published .tflite, run here by LiteRT.js (WebAssembly, XNNPACK).
// Nothing about the history is sent anywhere; the server only hands out static files. When the model has a
// per-user state (metadata.personal_state), the page keeps it in localStorage with the history, folds every pick
// into it with the model's update_state, and ranks with recommend_personal while "personalised" is on; "Forget
// me" deletes both.
import {loadLiteRt, loadAndCompile, Tensor} from "/vendor/litert/dist/index.js";

const SHOWN = 10;            // recommendations listed
const CATALOGUE_SIZE = 60;   // search results listed
const LIKED_RATING = 4.0;    // models trained with ratings see each pick as liked (as `ondevice-rec recommend`)

const $ = (id) => document.getElementById(id);
const history = [];          // vocabulary indices (what the model reads), oldest first
const STORAGE_KEY = "ondevice-rec";

function fail(message) {
  $("status").textContent = `Error: ${message}`;
  $("status").dataset.ready = "error";
}
window.addEventListener("error", (e) => fail(e.message));
window.addEventListener("unhandledrejection", (e) => fail(String(e.reason)));

const metadata = await (await fetch("/model/metadata.json")).json();
const vocabulary = await (await fetch("/model/vocabulary.json")).json();
// The model speaks vocabulary indices; vocabulary.json maps each index to the item's key and title. A page
// that starts from keys (an app's own history) maps them through `indexOf` and drops the unknown ones.
const items = vocabulary.items;  // by training popularity, items[i].index === i + 1
const titles = new Map(items.map((m) => [m.index, m.title || `item ${m.key}`]));
const keyOf = new Map(items.map((m) => [m.index, m.key]));
const idInput = metadata.inputs.find((i) => i.name === "context_index");
const ratingInput = metadata.inputs.find((i) => i.name === "context_rating");
const N = idInput.shape[0];

await loadLiteRt("/vendor/litert/wasm/");
const model = await loadAndCompile("/model/model.tflite", {accelerator: "wasm"});

// The per-user state (metadata.personal_state): float32[d + 1], zeros to start, updated on every pick. It belongs
// to this model file (its embeddings): a state kept for another model is dropped, never fed to this one.
const personal = metadata.personal_state || null;
const modelId = `${metadata.pipeline_run_id}|${metadata.model_uri}|${metadata.created_at}`;
let state = personal ? new Float32Array(personal.shape[0]) : null;

function save() {
  localStorage.setItem(STORAGE_KEY, JSON.stringify({model: modelId, history, state: state && Array.from(state)}));
}

function restore() {
  const saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || "null");
  if (!saved || saved.model !== modelId) return;
  history.push(...saved.history.filter((id) => titles.has(id)));
  if (personal && saved.state && saved.state.length === state.length) state = Float32Array.from(saved.state);
}

async function updateState(id) {
  const feeds = {[personal.update_inputs[0]]: new Tensor(state.slice(), [state.length]),
                 [personal.update_inputs[1]]: new Tensor(new Int32Array([id]), [])};
  const outputs = await model.run(personal.update_signature, feeds);
  state = (await outputs[personal.input].moveTo("wasm")).toTypedArray().slice();
  for (const t of Object.values(feeds)) t.delete();
  for (const t of Object.values(outputs)) t.delete();
}

function personalised() {
  return Boolean(personal) && $("personal").checked;
}

function padded(values, ArrayType) {
  const out = new ArrayType(N);  // zero = padding
  out.set(values.slice(0, N));
  return out;
}

async function recommend(withState) {
  const recent = history.slice().reverse();  // the model takes the most recent first
  const feeds = {[idInput.name]: new Tensor(padded(recent, Int32Array), [N])};
  if (ratingInput) {
    feeds[ratingInput.name] = new Tensor(padded(recent.map(() => LIKED_RATING), Float32Array), [N]);
  }
  if (withState) feeds[personal.input] = new Tensor(state.slice(), [state.length]);
  const started = performance.now();
  const outputs = await model.run(withState ? personal.recommend_signature : metadata.signature, feeds);
  const ids = (await outputs.top_ids.moveTo("wasm")).toTypedArray().slice();
  const scores = (await outputs.top_scores.moveTo("wasm")).toTypedArray().slice();
  const elapsed = performance.now() - started;
  for (const t of Object.values(feeds)) t.delete();
  for (const t of Object.values(outputs)) t.delete();
  const seen = new Set(history);
  const ranked = [];
  ids.forEach((id, i) => { if (id !== 0 && !seen.has(id) && ranked.length < SHOWN) ranked.push([id, scores[i]]); });
  return {ranked, elapsed};
}

function renderCatalogue() {
  const query = $("search").value.trim().toLowerCase();
  const picked = new Set(history);
  const list = $("catalogue");
  list.replaceChildren();
  for (const m of items) {
    if (list.children.length >= CATALOGUE_SIZE) break;
    const title = titles.get(m.index);
    if (picked.has(m.index) || (query && !title.toLowerCase().includes(query))) continue;
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.id = m.key;
    button.textContent = title;
    button.addEventListener("click", () => pick(m.index));
    const item = document.createElement("li");
    item.append(button);
    list.append(item);
  }
}

async function refresh() {
  const {ranked, elapsed} = await recommend(personalised());
  // The gain on show: the items the state brought into the list (those the history alone would not rank).
  const plain = personalised() ? new Set((await recommend(false)).ranked.map(([id]) => id)) : null;
  const list = $("recommendations");
  list.replaceChildren(...ranked.map(([id, score]) => {
    const item = document.createElement("li");
    item.dataset.id = keyOf.get(id);
    item.dataset.score = score;
    if (plain && !plain.has(id)) item.classList.add("personal");
    item.innerHTML = `<span class="title"></span> <span class="score">${score.toFixed(3)}</span>`;
    item.querySelector(".title").textContent = titles.get(id) || `item ${id}`;
    return item;
  }));
  list.dataset.updates = String(Number(list.dataset.updates) + 1);
  $("timing").textContent = `${elapsed.toFixed(2)} ms in this browser`;
  if (personal) {
    const brought = plain ? ranked.filter(([id]) => !plain.has(id)).length : 0;
    $("personal-effect").textContent = personalised()
      ? `your state (${personal.bytes} bytes, in this browser only) brought in ${brought} of ${ranked.length}`
      : "personalisation off: the history alone";
    $("personal-effect").dataset.brought = String(brought);
  }
  $("timing").dataset.ms = elapsed;
  $("history").replaceChildren(...history.map((id) => {
    const item = document.createElement("li");
    item.dataset.id = keyOf.get(id);
    item.textContent = titles.get(id) || `item ${id}`;
    return item;
  }));
  renderCatalogue();
}

async function pick(id) {
  history.push(id);
  if (personal) await updateState(id);
  save();
  $("search").value = "";
  await refresh();
}

async function forget() {
  history.length = 0;
  if (personal) state = new Float32Array(personal.shape[0]);
  localStorage.removeItem(STORAGE_KEY);
  await refresh();
}

restore();
$("search").addEventListener("input", renderCatalogue);
$("clear").addEventListener("click", forget);
$("personal").addEventListener("change", refresh);
if (!personal) {
  $("personal").disabled = true;
  $("personal").checked = false;
  $("personal-effect").textContent = "this model keeps no per-user state";
}
$("model-info").textContent = `${metadata.encoder} encoder, N=${N}, ${metadata.quantization}, ` +
  `${items.length} items, trained on ${metadata.dataset}; runtime LiteRT.js (WebAssembly)`;
await refresh();
$("search").disabled = false;
$("clear").disabled = false;
$("clear").dataset.ready = "1";
$("status").textContent = "Ready: pick items; the list re-ranks on every pick.";
$("status").dataset.ready = "1";
