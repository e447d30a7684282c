// `cargo xtask wasm-test` runs this: headless Chromium (Debian's, driven by playwright-core) opens the demo,
// feeds it a WAV, waits for the answer and checks it equals the native CLI's answer for the same WAV and
// projector. Usage: node browser.mjs URL WAV EXPECTED_ANSWER_FILE SCREENSHOT [TIMEOUT_S]

import { chromium } from "playwright-core";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [url, wav, expectedFile, screenshot, timeoutArg] = process.argv.slice(2);
// Compared exactly, whitespace included: two different all-whitespace answers must not pass.
const expected = readFileSync(expectedFile, "utf8");
const timeout = Number(timeoutArg || 900) * 1000;
const profile = mkdtempSync(join(tmpdir(), "tinyalign-chromium-"));

const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  ignoreDefaultArgs: ["--headless"],
  args: [
    "--headless=new",
    "--no-sandbox",
    "--enable-unsafe-webgpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
  ],
});
let failed = false;
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => console.log(`[page] ${m.text()}`));
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
  const started = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.ready || document.body.dataset.error, null, { timeout });
  const loadError = await page.evaluate(() => document.body.dataset.error);
  if (loadError) throw new Error(`the page could not load the model: ${loadError}`);
  const loaded = Date.now();
  console.log(`adapter: ${await page.textContent("#adapter")}; model loaded in ${((loaded - started) / 1000).toFixed(1)} s`);
  await page.setInputFiles("#wav", wav);
  await page.waitForFunction(() => !document.getElementById("ask").disabled, null, { timeout: 30_000 });
  await page.click("#ask");
  await page.waitForFunction(
    () => document.getElementById("answer").dataset.done || document.body.dataset.error,
    null,
    { timeout },
  );
  const askError = await page.evaluate(() => document.body.dataset.error);
  if (askError) throw new Error(`the page failed to answer: ${askError}`);
  const answer = await page.textContent("#answer");
  const timings = await page.$$eval("#timings tr", (rows) => rows.map((r) => r.innerText.replace("\t", ": ")));
  console.log(`browser stage timings:\n  ${timings.join("\n  ")}`);
  console.log(`answered in ${((Date.now() - loaded) / 1000).toFixed(1)} s`);
  await page.screenshot({ path: screenshot, fullPage: true });
  console.log(`screenshot: ${screenshot}`);
  if (answer !== expected) {
    failed = true;
    console.log(`MISMATCH\n  browser: ${JSON.stringify(answer)}\n  native:  ${JSON.stringify(expected)}`);
  } else {
    console.log(`browser answer equals the native CLI's: ${JSON.stringify(answer)}`);
  }
} catch (e) {
  failed = true;
  console.log(`FAILED: ${e.message}`);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
