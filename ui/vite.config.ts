import { svelte } from "@sveltejs/vite-plugin-svelte";
import { defineConfig } from "vitest/config";

// The engine embeds the built files (build.rs builds into its OUT_DIR through
// CARPOOL_UI_OUT_DIR). File names carry a content hash, so the engine can serve every
// file under assets/ as immutable and only index.html as no-cache.
const carpoolUrl = process.env.CARPOOL_URL ?? "http://127.0.0.1:7676";

export default defineConfig({
  plugins: [svelte()],
  base: "./",
  build: {
    outDir: process.env.CARPOOL_UI_OUT_DIR ?? "dist",
    emptyOutDir: true,
    assetsDir: "assets",
    // No inline <script> or data: modules: the engine's Content-Security-Policy allows
    // scripts from the page's own origin only.
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    sourcemap: false,
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev` next to a running Carpool (`npm run stack` prints one's address):
    // CARPOOL_URL=http://127.0.0.1:PORT npm run dev. The API refuses writes from a foreign
    // Origin, so the proxy presents the engine's own.
    proxy: {
      "/api": {
        target: carpoolUrl,
        changeOrigin: true,
        configure: (proxy) => proxy.on("proxyReq", (request) => request.setHeader("origin", carpoolUrl)),
      },
    },
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.ts"],
    setupFiles: ["src/test-setup.ts"],
  },
  resolve: process.env.VITEST ? { conditions: ["browser"] } : undefined,
});
