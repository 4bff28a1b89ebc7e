// Drives the demo page in headless Chromium (playwright-core, Debian's /usr/bin/chromium) for the tests:
//   node demo/drive.mjs URL SCREENSHOT TITLE [TITLE ...]
// Searches for each title, picks it, waits for the re-ranking and prints one JSON object: the recommendation
// ids (and scores, per-tap milliseconds) before the first pick and after every pick. With a per-user state it
// then turns "personalised" off and on, reloads the page (the history and state come back from localStorage)
// and clicks "Forget me", reading the list and the stored state after each.
import {chromium} from "playwright-core";

const [url, screenshot, ...titles] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const requests = [];
try {
  const page = await browser.newPage();
  page.on("request", (r) => requests.push(r.url()));
  await page.goto(url);
  await page.waitForSelector('#status[data-ready="1"], #status[data-ready="error"]', {timeout: 60000});
  const status = await page.textContent("#status");
  if ((await page.getAttribute("#status", "data-ready")) !== "1") throw new Error(status);
  const read = async () => page.$$eval("#recommendations li", (items) => items.map((li) => [li.dataset.id,
                                                                                        Number(li.dataset.score)]));
  const steps = [{history: [], recommendations: await read()}];
  for (const title of titles) {
    const updates = Number(await page.getAttribute("#recommendations", "data-updates"));
    await page.fill("#search", title);
    await page.click(`#catalogue button:text-is(${JSON.stringify(title)})`);
    await page.waitForFunction((n) => Number(document.querySelector("#recommendations").dataset.updates) > n,
                               updates, {timeout: 30000});
    steps.push({
      history: await page.$$eval("#history li", (items) => items.map((li) => li.dataset.id)),
      recommendations: await read(),
      ms: Number(await page.getAttribute("#timing", "data-ms")),
    });
  }
  await page.screenshot({path: screenshot, fullPage: true});
  const stored = async () => page.evaluate(() => localStorage.getItem("ondevice-rec"));
  const rerank = async (action) => {
    const updates = Number(await page.getAttribute("#recommendations", "data-updates"));
    await action();
    await page.waitForFunction((n) => Number(document.querySelector("#recommendations").dataset.updates) > n,
                               updates, {timeout: 30000});
    return read();
  };
  const personal = {enabled: !(await page.isDisabled("#personal"))};
  if (personal.enabled) {
    personal.brought = Number(await page.getAttribute("#personal-effect", "data-brought"));
    personal.stored = JSON.parse(await stored());
    personal.off = await rerank(() => page.uncheck("#personal"));
    personal.on = await rerank(() => page.check("#personal"));
    await page.reload();
    await page.waitForSelector('#status[data-ready="1"]', {timeout: 60000});
    personal.reloaded = {history: await page.$$eval("#history li", (items) => items.map((li) => li.dataset.id)),
                         recommendations: await read()};
    personal.forgotten = {recommendations: await rerank(() => page.click("#clear"))};
    personal.forgotten.history = await page.$$eval("#history li", (items) => items.map((li) => li.dataset.id));
    personal.forgotten.stored = await stored();
  }
  console.log(JSON.stringify({steps, requests, personal}));
} finally {
  await browser.close();
}
