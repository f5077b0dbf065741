// Drives the security console in Debian's Chromium (headless) on a phone-sized
// screen: sign in, wait for an alert whose id starts with PREFIX, acknowledge
// it, reload, wait until the stored state says "acknowledged", screenshot.
//
// Usage: node console.mjs BASE_URL TOKEN ALERT_PREFIX SCREENSHOT.png
// Environment: ARGUS_CHROMIUM (default /usr/bin/chromium).
// Prints one JSON line: {"alert_id": ..., "state": ..., "cameras": [...]}.
import { chromium } from "playwright-core";

const [base, token, prefix, screenshot] = process.argv.slice(2);
if (!screenshot) {
  console.error("usage: node console.mjs BASE_URL TOKEN ALERT_PREFIX SCREENSHOT.png");
  process.exit(2);
}

const browser = await chromium.launch({
  executablePath: process.env.ARGUS_CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 2 });
  page.on("console", (message) => console.error("page:", message.text()));
  page.on("response", (response) => {
    if (response.status() >= 400) console.error("page: HTTP", response.status(), response.url());
  });
  await page.goto(base + "/console");
  await page.fill("#actor", "guard-1");
  await page.fill("#token", token);
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#console:not([hidden])");

  const row = `tr[data-alert-id^="${prefix}"]`;
  await page.waitForSelector(row, { timeout: 60000 });
  const alertId = await page.getAttribute(row, "data-alert-id");
  await page.click(`${row} button.ack`);

  // The console shows it at once; reload until the stored state (through
  // Kafka and the aggregator's next flush) says so too: the row's state and
  // the actions in the alert's detail, both read through SQL.
  let state = "";
  let actions = [];
  for (let attempt = 0; attempt < 40; attempt++) {
    await page.reload();
    await page.waitForSelector("#console:not([hidden])");
    try {
      // After a reload the row comes from the stored table, which the
      // aggregator may not have flushed yet.
      await page.waitForSelector(row, { timeout: 3000 });
    } catch {
      console.error("attempt", attempt, "no row yet:", await page.textContent("#status"));
      continue;
    }
    await page.click(`${row} td:first-child`); // opens the detail with the person's path
    await page.waitForSelector("#detail:not([hidden])");
    await page.waitForFunction(() => document.querySelectorAll("#detail-actions li").length > 0);
    actions = await page.$$eval("#detail-actions li", (items) => items.map((li) => li.textContent));
    state = await page.textContent(`${row} .state`);
    // Both read the stored tables, at slightly different moments.
    if (state.includes("acknowledged") && actions.some((a) => a.includes("acknowledged by"))) break;
    await page.waitForTimeout(500);
  }
  // The scenario's camera "dock" goes DOWN 2 s in; on a busy machine the
  // acknowledgement can be stored before its first DOWN report is sent, so
  // give the board (stored reports, then the live feed) time to show it.
  try {
    await page.waitForFunction(
      () => [...document.querySelectorAll("#cameras li")].some((li) => li.textContent === "dock: DOWN"),
      null,
      { timeout: 20000 },
    );
  } catch {
    console.error("the camera board never showed dock: DOWN");
  }
  const cameras = await page.$$eval("#cameras li", (items) => items.map((li) => li.textContent));
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(JSON.stringify({ alert_id: alertId, state, cameras, actions }));
} finally {
  await browser.close();
}
