// Headless Chromium (Debian's, or $CHROMIUM) as every browser test here starts it: no
// sandbox or GPU, background networking off so it only talks to the URL under test, and
// autoplay allowed.
import { chromium } from 'playwright-core';

export function launch(extraArgs = []) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--autoplay-policy=no-user-gesture-required', ...extraArgs,
    ],
  });
}
