/** True in the development build (`cloister up`): simulated and debuggable platforms are accepted. */
declare const __CLOISTER_ACCEPT_SIMULATION__: boolean;
