// Builds the dashboard into ../dist (or the directory given as the first argument):
// app.js (our modules and uPlot, bundled and minified), app.css and index.html. The
// output depends only on the sources and the locked packages, so a rebuild from the
// lock file gives the same bytes (scripts/ui.sh check compares them).
import * as esbuild from "esbuild";
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const out = resolve(process.argv[2] || join(here, "..", "dist"));
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

const common = {
  bundle: true,
  minify: true,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
  absWorkingDir: here,
};
await esbuild.build({ ...common, entryPoints: ["src/main.js"], outfile: join(out, "app.js"), format: "iife", target: "es2020" });
await esbuild.build({ ...common, entryPoints: ["src/app.css"], outfile: join(out, "app.css") });
copyFileSync(join(here, "src", "index.html"), join(out, "index.html"));
