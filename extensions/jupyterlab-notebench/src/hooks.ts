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

/** `run(f)` clears the last error, runs `f` and keeps its error message for display. */
export function useAsync(): {
  error: string;
  run: (f: () => Promise<unknown>) => Promise<unknown>;
} {
  const [error, setError] = React.useState('');
  const run = (f: () => Promise<unknown>) => {
    setError('');
    return f().catch(e => setError(e.message));
  };
  return { error, run };
}

/**
 * `load()`'s answer, polled every `intervalMs` (see usePolling); `error` is the last failure's
 * message (cleared by the next success) and `refresh()` polls again at once. Nothing is loaded
 * while `enabled()` is false.
 */
export function usePolled<T>(
  load: () => Promise<T>,
  intervalMs: number,
  deps: React.DependencyList,
  enabled: () => boolean = () => true
): { data: T | null; error: string; refresh: () => void } {
  const [data, setData] = React.useState<T | null>(null);
  const [error, setError] = React.useState('');
  const [tick, setTick] = React.useState(0);
  usePolling(
    async isCurrent => {
      if (!enabled()) {
        return;
      }
      try {
        const answer = await load();
        if (isCurrent()) {
          setData(answer);
          setError('');
        }
      } catch (e: any) {
        if (isCurrent()) {
          setError(e.message);
        }
      }
    },
    intervalMs,
    [...deps, tick]
  );
  return { data, error, refresh: () => setTick(t => t + 1) };
}
