// The portal builds twice: `dist-dev/` (mode simulation: simulated, debuggable platforms are accepted, for
// `cloister up`) and `dist/` (mode production: only hardware TEEs that are not debuggable). Both are
// minified static files; neither needs a server beyond static hosting.
import { fileURLToPath } from "node:url";
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

export default defineConfig(({ mode }) => ({
  plugins: [react()],
  define: {
    __CLOISTER_ACCEPT_SIMULATION__: JSON.stringify(mode === "simulation"),
    // A release build names the platform builds it trusts (CLOISTER_PLATFORM_MEASUREMENTS, comma-separated
    // hex): then /config.json cannot change them.
    __CLOISTER_BUILT_MEASUREMENTS__: JSON.stringify(
      (process.env.CLOISTER_PLATFORM_MEASUREMENTS ?? "")
        .split(",")
        .map((measurement) => measurement.trim().toLowerCase())
        .filter((measurement) => /^[0-9a-f]{64}$/.test(measurement)),
    ),
  },
  resolve: {
    conditions: ["@cloister/source"],
    alias: {
      // The DICOM decoder inflates deflated transfer syntaxes with node:zlib; in the browser, fflate.
      "node:zlib": fileURLToPath(new URL("./src/zlib-browser.ts", import.meta.url)),
    },
  },
  build: {
    target: "es2022",
    minify: true,
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
}));
