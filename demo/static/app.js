// The demo page: every pick re-ranks with the published .tflite, run here by LiteRT.js (WebAssembly, XNNPACK).
// Nothing about the history is sent anywhere; the server only hands out static files.
import {loadLiteRt, loadAndCompile, Tensor} from "/vendor/litert/dist/index.js";

const SHOWN = 10;            // recommendations listed
const CATALOGUE_SIZE = 60;   // search results listed
const LIKED_RATING = 4.0;    // models trained with ratings see each pick as liked (as `ondevice-rec recommend`)

const $ = (id) => document.getElementById(id);
const history = [];          // vocabulary indices (what the model reads), oldest first

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

function padded(values, ArrayType) {
  const out = new ArrayType(N);  // zero = padding
  out.set(values.slice(0, N));
  return out;
}

async function recommend() {
  const recent = history.slice().reverse();  // the model takes the most recent first
  const feeds = {[idInput.name]: new Tensor(padded(recent, Int32Array), [N])};
  if (ratingInput) {
    feeds[ratingInput.name] = new Tensor(padded(recent.map(() => LIKED_RATING), Float32Array), [N]);
  }
  const started = performance.now();
  const outputs = await model.run(metadata.signature, feeds);
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
  const {ranked, elapsed} = await recommend();
  const list = $("recommendations");
  list.replaceChildren(...ranked.map(([id, score]) => {
    const item = document.createElement("li");
    item.dataset.id = keyOf.get(id);
    item.dataset.score = score;
    item.innerHTML = `<span class="title"></span> <span class="score">${score.toFixed(3)}</span>`;
    item.querySelector(".title").textContent = titles.get(id) || `item ${id}`;
    return item;
  }));
  list.dataset.updates = String(Number(list.dataset.updates) + 1);
  $("timing").textContent = `${elapsed.toFixed(2)} ms in this browser`;
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
  $("search").value = "";
  await refresh();
}

$("search").addEventListener("input", renderCatalogue);
$("clear").addEventListener("click", async () => { history.length = 0; await refresh(); });
$("model-info").textContent = `${metadata.encoder} encoder, N=${N}, ${metadata.quantization}, ` +
  `${items.length} items, trained on ${metadata.dataset}; runtime LiteRT.js (WebAssembly)`;
await refresh();
$("search").disabled = false;
$("clear").disabled = false;
$("status").textContent = "Ready: pick items; the list re-ranks on every pick.";
$("status").dataset.ready = "1";
