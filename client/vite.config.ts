import { defineConfig } from "vite";
import preact from "@preact/preset-vite";

// The server serves dist/ at "/"; in development `npm run dev` proxies the API to a running
// server (COLABEL_DEV_API, default http://127.0.0.1:8000).
const api = process.env.COLABEL_DEV_API ?? "http://127.0.0.1:8000";
const ws = api.replace(/^http/, "ws");

export default defineConfig({
  plugins: [preact()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: true, chunkSizeWarningLimit: 800 },
  server: {
    proxy: {
      "/api": { target: api, changeOrigin: false },
      "/collab": { target: ws, ws: true },
      "/events": { target: ws, ws: true },
    },
  },
});
