// What a job card and the form read from a job of the API (plain ES module, no DOM): its name, the picture a
// card shows, and its input images.

/** The job's name: its `name` parameter (the image's file name without its extension), or '' without one. */
export function jobName(job) {
  return typeof job?.params?.name === 'string' ? job.params.name : '';
}

/** The picture a card shows: the result's thumbnail when the server made one, else the first input's preview. */
export function cardPicture(job) {
  return job?.result?.thumbnail || job?.preview || job?.inputs?.[0] || null;
}

/** Whether `cardPicture` is a picture of the result (not of the input). */
export function picturesResult(job) {
  return Boolean(job?.result?.thumbnail);
}

/** The URLs of the job's input images, in order (its preview is not one of them). */
export function inputUrls(job) {
  return (job?.inputs || []).filter((url) => url !== job.preview);
}

/** The file name an input of the job gets back in the form: the job's name (so a new job is named alike; views
 * after the first are numbered), else `input-N.png`. */
export function inputFileName(job, index) {
  const name = jobName(job);
  if (!name) return `input-${index + 1}.png`;
  return index === 0 ? `${name}.png` : `${name}-${index + 1}.png`;
}
