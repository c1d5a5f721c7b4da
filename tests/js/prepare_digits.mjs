// Run the web page's preprocess.js on rasters written by tests/test_webpage.py.
// Usage: node prepare_digits.mjs PREPROCESS_JS MANIFEST_JSON PIXELS_BIN
// The manifest lists {offset, width, height, channels} for 8-bit rasters in PIXELS_BIN
// (channels 1 = gray, 4 = RGBA). Prints a JSON list: {image: [784 floats]} or {error: "..."}.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [preprocessPath, manifestPath, pixelsPath] = process.argv.slice(2);
const { DrawingError, grayFromUint8, prepareDigit, rgbaToGray } = await import(pathToFileURL(preprocessPath).href);
const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));
const bytes = new Uint8Array(readFileSync(pixelsPath));

const results = manifest.map(({ offset, width, height, channels }) => {
  const pixels = bytes.subarray(offset, offset + width * height * channels);
  try {
    const gray = channels === 4 ? rgbaToGray(pixels, width, height) : grayFromUint8(pixels);
    return { image: Array.from(prepareDigit(gray, width, height)) };
  } catch (err) {
    if (!(err instanceof DrawingError)) throw err;
    return { error: err.message };
  }
});
process.stdout.write(JSON.stringify(results));
