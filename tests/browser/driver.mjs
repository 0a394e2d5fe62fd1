// Drives Debian's Chromium for the Python browser tests (tests/browser/driver.py), one JSON
// request per line on stdin, one JSON answer per line on stdout. It only relays Playwright calls:
// every expectation lives in the Python tests.
//   node driver.mjs /usr/bin/chromium
import readline from "node:readline";
import { chromium } from "playwright-core";

const FLAGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];
const PAGE_METHODS = new Set(["goto", "reload", "url", "title", "content", "screenshot", "evaluate", "waitForURL"]);
const LOCATOR_METHODS = new Set([
  "fill", "click", "check", "uncheck", "press", "focus", "textContent", "innerText", "getAttribute",
  "isVisible", "isHidden", "isChecked", "inputValue", "count", "evaluate", "waitFor",
]);

// Playwright makes its own fresh profile (--user-data-dir in a temporary folder) per launch.
const browser = await chromium.launch({ executablePath: process.argv[2], args: FLAGS, headless: true });
let context = null;
let page = null;
let seen = { requests: [], errors: [] };

async function open({ javaScriptEnabled = true } = {}) {
  if (context) await context.close();
  context = await browser.newContext({ javaScriptEnabled, viewport: { width: 900, height: 1100 } });
  context.setDefaultTimeout(10_000);
  page = await context.newPage();
  seen = { requests: [], errors: [] };
  page.on("request", (request) => seen.requests.push({ method: request.method(), url: request.url() }));
  page.on("pageerror", (error) => seen.errors.push(String(error)));
  // Console errors, except Chromium's note on each 4xx/5xx answer: the tests check statuses themselves.
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      seen.errors.push(message.text());
    }
  });
  return null;
}

// Click a submit button and wait for the page the browser lands on (no-JavaScript form posts).
async function submit({ selector }) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === "POST"),
    page.waitForNavigation({ waitUntil: "load" }),
    page.locator(selector).click(),
  ]);
  return { status: response.status(), url: page.url() };
}

function plain(value) {
  if (value && typeof value.status === "function" && typeof value.url === "function") {
    return { status: value.status(), url: value.url() }; // a navigation's Response
  }
  return Buffer.isBuffer(value) ? null : (value ?? null);
}

async function run(request) {
  const { op, method, selector, args = [] } = request;
  if (op === "open") return open(request.options);
  if (op === "submit") return submit(request);
  if (op === "seen") return seen;
  if (op === "page" && PAGE_METHODS.has(method)) return plain(await page[method](...args));
  if (op === "locator" && LOCATOR_METHODS.has(method)) return plain(await page.locator(selector)[method](...args));
  if (op === "keyboard" && method === "press") return plain(await page.keyboard.press(...args));
  throw new Error(`unknown request ${op} ${method ?? ""}`);
}

process.stdout.write(JSON.stringify({ ready: browser.version() }) + "\n");
for await (const line of readline.createInterface({ input: process.stdin })) {
  const request = JSON.parse(line);
  let answer;
  try {
    answer = { id: request.id, ok: true, value: await run(request) };
  } catch (error) {
    answer = { id: request.id, ok: false, error: String(error?.message ?? error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
if (context) await context.close();
await browser.close();
