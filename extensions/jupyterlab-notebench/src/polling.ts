import * as React from 'react';

/**
 * Call `load` now, then again `intervalMs` after each call ends, until the component unmounts or
 * `deps` change. `load` gets `isCurrent()` so an answer arriving after that is not applied.
 */
export function usePolling(
  load: (isCurrent: () => boolean) => Promise<void>,
  intervalMs: number,
  deps: React.DependencyList
): void {
  React.useEffect(() => {
    let stopped = false;
    let timer: number | undefined;
    const isCurrent = () => !stopped;
    const tick = async () => {
      await load(isCurrent);
      if (!stopped) {
        timer = window.setTimeout(tick, intervalMs);
      }
    };
    void tick();
    return () => {
      stopped = true;
      window.clearTimeout(timer);
    };
  }, deps);
}
