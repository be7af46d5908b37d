import { mount } from "svelte";
import App from "./App.svelte";
import "./app.css";
import { loadPolyfills } from "./lib/polyfills";

await loadPolyfills();
mount(App, { target: document.getElementById("app")! });
