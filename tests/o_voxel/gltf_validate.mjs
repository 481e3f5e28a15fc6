// Validate one or more .glb files with the Khronos glTF Validator and print one JSON report per line.
// Usage: node tests/o_voxel/gltf_validate.mjs a.glb [b.glb ...]
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");

let failed = false;
for (const path of process.argv.slice(2)) {
  try {
    const bytes = new Uint8Array(await readFile(path));
    const report = await validator.validateBytes(bytes, { maxIssues: 100, writeTimestamp: false });
    const { numErrors, numWarnings, numInfos, messages } = report.issues;
    console.log(JSON.stringify({ path, numErrors, numWarnings, numInfos, messages, info: report.info }));
  } catch (error) {
    failed = true;
    console.log(JSON.stringify({ path, numErrors: 1, messages: [{ code: "READ_FAILED", message: String(error) }] }));
  }
}
process.exit(failed ? 2 : 0);
