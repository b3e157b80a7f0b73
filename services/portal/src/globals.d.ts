/** True in the development build (`cloister up`): simulated and debuggable platforms are accepted. */
declare const __CLOISTER_ACCEPT_SIMULATION__: boolean;
/** The platform measurements fixed at build time (empty: those of /config.json). */
declare const __CLOISTER_BUILT_MEASUREMENTS__: readonly string[];
